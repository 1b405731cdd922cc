"""Prometheus metrics every live dataflow moves; exposed by ``serve_metrics`` on ``METRICS_PORT``.

Counted at the edges of a flow (:mod:`dataflows.live`): messages read per
topic where they enter, and every published event where it leaves, so the
per-tick hot path carries no metric code. Latency is a published event's
creation (wall clock) minus the exchange time of the tick behind it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from schemas.envelope import (
    FailedEnvelope,
    FilledEnvelope,
    Outbound,
    PnlEnvelope,
    RejectedEnvelope,
    SignalEnvelope,
    SubmittedEnvelope,
    ValidatedEnvelope,
)

DLQ_MESSAGES = Counter(
    "alpha_panda_dlq_messages",
    "Messages sent to a dead-letter topic",
    ["topic", "broker", "error_type"],
)
EVENTS_OUT = Counter(
    "alpha_panda_events",
    "Events published, by topic",
    ["topic"],
)
RETRIES = Counter(
    "alpha_panda_retries",
    "Retried writes to Redis, Postgres or a broker API, by error class",
    ["error_type"],
)
MESSAGES_IN = Counter(
    "alpha_panda_messages_in",
    "Kafka messages read by a dataflow input (market.ticks: ticks in), by topic",
    ["topic"],
)
SIGNALS = Counter("alpha_panda_signals", "Trading signals, by broker and strategy", ["broker", "strategy"])
VALIDATED = Counter("alpha_panda_signals_validated", "Signals that passed every risk rule", ["broker"])
REJECTED = Counter(
    "alpha_panda_signals_rejected", "Rejected signals, once per failing risk rule", ["broker", "rule"]
)
ORDERS = Counter(
    "alpha_panda_orders", "Order events, by broker and stage (submitted, filled, failed)", ["broker", "stage"]
)
FILLS = Counter(
    "alpha_panda_fills", "Filled orders, by broker and execution mode", ["broker", "execution_mode"]
)
EXCHANGE_LATENCY = Histogram(
    "alpha_panda_stage_latency_seconds",
    "Creation of a published event minus the exchange time of its tick, by stage",
    ["stage"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)


INPUT_LAG = Gauge(
    "alpha_panda_input_lag",
    "Messages between a partition's high watermark and this flow's read position (0 when caught up)",
    ["topic", "partition"],
)

log = logging.getLogger(__name__)

INPUT_POSITIONS: dict[tuple[str, int], int] = {}
"""The last offset each Kafka input of this process read, by (topic, partition); set by
:func:`dataflows.live.kafka_input`, read by the lag reporter."""


def report_input_lag(bootstrap: str, every_s: float = 5.0) -> threading.Thread:
    """Every ``every_s``, set ``alpha_panda_input_lag`` for each partition this process reads.

    Lag is the high watermark minus (last offset read + 1), never below 0. On
    Tansu the high watermark can trail the log end by one record batch, so
    there the lag reads low by at most a batch.
    """
    # Imported here: the replay path imports this module and never needs Kafka.
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    from connectors.kafka import consumer_config

    def run() -> None:
        consumer = Consumer(consumer_config(bootstrap))
        stop = threading.Event()
        while not stop.wait(every_s):
            for (topic, partition), offset in list(INPUT_POSITIONS.items()):
                try:
                    high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=2)[1]
                except KafkaException as err:
                    log.warning("input lag: no watermark for %s[%d]: %s", topic, partition, err)
                    continue
                INPUT_LAG.labels(topic, str(partition)).set(max(0, high - (offset + 1)))

    thread = threading.Thread(target=run, name="input-lag", daemon=True)
    thread.start()
    return thread


def serve_metrics(port: int, host: str = "127.0.0.1") -> None:
    """Serve ``/metrics`` on ``host``:``port``; port 0 means do not serve.

    ``host`` defaults to loopback (prometheus_client's own default is every
    interface); set ``METRICS_HOST`` to expose it, e.g. ``0.0.0.0`` in a pod.
    """
    if port:
        start_http_server(port, addr=host)


def _latency(stage: str, created: datetime, exchange: datetime) -> None:
    EXCHANGE_LATENCY.labels(stage).observe(max(0.0, (created - exchange).total_seconds()))


def observe_published(item: Outbound) -> None:
    """Count one published message: per topic, and by kind (signal, decision, order, fill)."""
    EVENTS_OUT.labels(item.topic).inc()
    envelope = item.envelope
    broker = envelope.broker
    if isinstance(envelope, SignalEnvelope):
        SIGNALS.labels(broker, envelope.data.strategy_id).inc()
        _latency("signal", envelope.ts, envelope.data.timestamp)
    elif isinstance(envelope, ValidatedEnvelope):
        VALIDATED.labels(broker).inc()
        _latency("validated", envelope.ts, envelope.data.timestamp)
    elif isinstance(envelope, RejectedEnvelope):
        for rule, passed in envelope.data.risk_checks.items():
            if not passed:
                REJECTED.labels(broker, rule).inc()
        _latency("rejected", envelope.ts, envelope.data.timestamp)
    elif isinstance(envelope, SubmittedEnvelope | FailedEnvelope):
        stage = "submitted" if isinstance(envelope, SubmittedEnvelope) else "failed"
        ORDERS.labels(broker, stage).inc()
    elif isinstance(envelope, FilledEnvelope):
        ORDERS.labels(broker, "filled").inc()
        FILLS.labels(broker, envelope.data.execution_mode).inc()
        _latency("filled", envelope.ts, envelope.data.timestamp)
    elif isinstance(envelope, PnlEnvelope):
        _latency("pnl", envelope.ts, envelope.data.timestamp)


def input_counter(topic: str) -> Callable[[], None]:
    """The bound ``inc`` of ``alpha_panda_messages_in{topic}`` (label lookup paid once)."""
    return MESSAGES_IN.labels(topic).inc
