"""Prometheus metrics every live dataflow moves; exposed by ``serve_metrics`` on ``METRICS_PORT``.

Counted at the edges of a flow (:mod:`dataflows.live`): messages read per
topic where they enter, and every published event where it leaves, so the
per-tick hot path carries no metric code. Latency is a published event's
creation (wall clock) minus the exchange time of the tick behind it, and
minus that tick's Kafka create time (:data:`CREATE_LATENCY`; per-stage
flows learn it from the ``ap-tick-created-ms`` header, see
:mod:`dataflows.tick_time`). Snapshot durations time our stateful steps'
``snapshot()`` calls (:func:`snapshot_timer`): Bytewax 0.21 offers no hook
for the duration of a whole epoch or recovery write.
"""

from __future__ import annotations

import collections
import functools
import logging
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Final

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from dataflows.runtime.batched_histogram import BatchedHistogram
from schemas.envelope import (
    FailedEnvelope,
    FilledEnvelope,
    Outbound,
    PnlEnvelope,
    Published,
    RejectedEnvelope,
    SignalEnvelope,
    SubmittedEnvelope,
    ValidatedEnvelope,
    messages_in,
)
from schemas.headers import HeaderError, tick_created_ms
from schemas.topics import MARKET_TICKS

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
EXCHANGE_LATENCY = BatchedHistogram(
    "alpha_panda_stage_latency_seconds",
    "Creation of a published event minus the exchange time of its tick, by stage",
    ["stage"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
CREATE_LATENCY = BatchedHistogram(
    "alpha_panda_stage_create_latency_seconds",
    "Creation of a published event minus the Kafka create time of the tick behind it "
    "(input: market.ticks), by stage",
    ["stage", "input"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
STATE_SNAPSHOT = Histogram(
    "alpha_panda_state_snapshot_seconds",
    "Wall time of one snapshot() call of a stateful step (Bytewax calls it per key at each epoch close)",
    ["step"],
    buckets=(0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0),
)
BAD_HEADERS = Counter(
    "alpha_panda_bad_headers",
    "Messages read with a garbled pipeline header (the message itself is processed), by topic and header",
    ["topic", "header"],
)

INPUT_LAG = Gauge(
    "alpha_panda_input_lag",
    "Messages between a partition's high watermark and this flow's read position (0 when caught up)",
    ["topic", "partition"],
)

log = logging.getLogger(__name__)

INPUT_POSITIONS: dict[tuple[str, int], int] = {}
"""The last offset each Kafka input of this process read, by (topic, partition); set by
:func:`dataflows.runtime.inputs.kafka_input`, read by the lag reporter."""


def report_input_lag(bootstrap: str, every_s: float = 5.0) -> threading.Thread:
    """Every ``every_s``, set ``alpha_panda_input_lag`` for each partition this process reads.

    Lag is the high watermark minus (last offset read + 1), never below 0. On
    Tansu the high watermark can trail the log end by one record batch, so
    there the lag reads low by at most a batch.
    """
    # Imported here: the replay path imports this module and never needs Kafka.
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    from connectors.kafka.config import consumer_config

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


@functools.cache
def _child(metric: Any, *labels: str) -> Any:
    """``metric.labels(*labels)``, looked up once per label set (nothing here ever removes a child)."""
    return metric.labels(*labels)


Lags = collections.defaultdict[str, list[float]]
"""One published item's latencies in seconds, by stage."""


def _lag(created: datetime, exchange: datetime) -> float:
    return max(0.0, (created - exchange).total_seconds())


def observe_published(item: Published) -> None:
    """Count published messages (one, or a list): per topic, and by kind (signal, decision, order, fill).

    Counters move once per label set of the item (a batch of the hot path
    is one item), and each stage's latencies go to the histogram in one
    call (:class:`dataflows.runtime.batched_histogram.BatchedHistogram`),
    one value per message. A message with headers (per-stage flows) also
    has its latency from its tick's Kafka create time observed, from
    ``ap-tick-created-ms``; the all-in-one flow does that per batch
    (:func:`observe_batch_create_latency`).
    """
    counts: collections.Counter[tuple[Any, ...]] = collections.Counter()
    lags: Lags = collections.defaultdict(list)
    for message in messages_in(item):
        _observe_one(message, counts, lags)
    for (metric, *labels), count in counts.items():
        _child(metric, *labels).inc(count)
    for stage, values in lags.items():
        EXCHANGE_LATENCY.observe((stage,), values)


def _observe_one(item: Outbound, counts: collections.Counter[tuple[Any, ...]], lags: Lags) -> None:
    counts[EVENTS_OUT, item.topic] += 1
    envelope = item.envelope
    broker = envelope.broker
    timed: tuple[str, datetime] | None = None  # (stage, exchange time) of a stage whose latency is observed
    if isinstance(envelope, SignalEnvelope):
        counts[SIGNALS, broker, envelope.data.strategy_id] += 1
        timed = "signal", envelope.data.timestamp
    elif isinstance(envelope, ValidatedEnvelope):
        counts[VALIDATED, broker] += 1
        timed = "validated", envelope.data.timestamp
    elif isinstance(envelope, RejectedEnvelope):
        for rule, passed in envelope.data.risk_checks.items():
            if not passed:
                counts[REJECTED, broker, rule] += 1
        timed = "rejected", envelope.data.timestamp
    elif isinstance(envelope, SubmittedEnvelope | FailedEnvelope):
        kind = "submitted" if isinstance(envelope, SubmittedEnvelope) else "failed"
        counts[ORDERS, broker, kind] += 1
    elif isinstance(envelope, FilledEnvelope):
        counts[ORDERS, broker, "filled"] += 1
        counts[FILLS, broker, envelope.data.execution_mode] += 1
        timed = "filled", envelope.data.timestamp
    elif isinstance(envelope, PnlEnvelope):
        timed = "pnl", envelope.data.timestamp
    if timed is not None:
        stage, exchange = timed
        lags[stage].append(_lag(envelope.ts, exchange))
    if item.headers is not None:
        _observe_tick_created(item)


def input_counter(topic: str) -> Callable[[], None]:
    """The bound ``inc`` of ``alpha_panda_messages_in{topic}`` (label lookup paid once)."""
    return MESSAGES_IN.labels(topic).inc


# --- latency from Kafka create time -----------------------------------------------

CREATE_STAGES: Final[dict[type, str]] = {
    SignalEnvelope: "signal",
    ValidatedEnvelope: "validated",
    RejectedEnvelope: "rejected",
    FilledEnvelope: "filled",
    PnlEnvelope: "pnl",
}
"""The stages whose output latency is observed (the same as for exchange time)."""


def _seconds_after(created: datetime, moment: datetime) -> float:
    return max(0.0, (moment - created).total_seconds())


def _tick_at(ticks: Sequence[Any], times: list[datetime], start: int, at: datetime, token: int | None) -> int:
    """The first position from ``start`` of a tick at ``at`` (of instrument ``token``), or -1."""
    position = start
    while True:
        try:
            position = times.index(at, position)
        except ValueError:
            return -1
        if token is None or ticks[position].data.instrument_token == token:
            return position
        position += 1


def batch_create_latencies(
    out: Sequence[Outbound],
    ticks: Sequence[Any],
    times: list[datetime],
    positions: Sequence[int],
    created: Sequence[datetime | None],
) -> list[tuple[str, float]]:
    """``(stage, seconds)`` for each event of ``out`` from its tick's Kafka create time.

    In: what one batch of the all-in-one flow made (``out``, in the order the
    shard made it), the batch's decoded ``ticks`` with their exchange
    ``times``, their ``positions`` in the raw batch and its Kafka create-time
    column ``created``. A signal belongs to the tick at its exchange time and
    instrument, a snapshot to the tick whose time made it due; decisions and
    fills to the signal before them. Out: the envelope's creation minus that
    tick's create time, never below 0; events whose tick is not in the batch
    (held ticks replayed), has no create time, or of other stages are skipped.
    The search only moves forward, so a batch costs one pass over ``times``.
    """
    found: list[tuple[str, float]] = []
    cursor = 0
    tick_created: datetime | None = None
    for item in out:
        envelope = item.envelope
        kind = type(envelope)
        stage = CREATE_STAGES.get(kind)
        if stage is None:
            continue
        if kind is SignalEnvelope or kind is PnlEnvelope:
            token = envelope.data.instrument_token if kind is SignalEnvelope else None
            position = _tick_at(ticks, times, cursor, envelope.data.timestamp, token)
            if position < 0:
                tick_created = None
                continue
            cursor = position
            tick_created = created[positions[position]]
        if tick_created is not None:
            found.append((stage, _seconds_after(tick_created, envelope.ts)))
    return found


def observe_batch_create_latency(
    out: Sequence[Outbound],
    ticks: Sequence[Any],
    times: list[datetime],
    positions: Sequence[int],
    created: Sequence[datetime | None] | None,
) -> None:
    """Observe :func:`batch_create_latencies` in ``alpha_panda_stage_create_latency_seconds``.

    ``created`` None (a tick file, not Kafka) observes nothing.
    """
    if created is None or not out:
        return
    by_stage: Lags = collections.defaultdict(list)
    for stage, seconds in batch_create_latencies(out, ticks, times, positions, created):
        by_stage[stage].append(seconds)
    for stage, values in by_stage.items():
        CREATE_LATENCY.observe((stage, MARKET_TICKS), values)


def _observe_tick_created(item: Outbound) -> None:
    """Observe ``item``'s creation minus its ``ap-tick-created-ms`` header (our own, so well formed)."""
    stage = CREATE_STAGES.get(type(item.envelope))
    if stage is None:
        return
    try:
        created_ms = tick_created_ms(item.topic, item.headers)
    except HeaderError:
        return
    if created_ms is not None:
        seconds = item.envelope.ts.timestamp() - created_ms / 1000
        CREATE_LATENCY.observe((stage, MARKET_TICKS), (max(0.0, seconds),))


# --- snapshot durations -----------------------------------------------------------


def snapshot_timer(step: str) -> Any:
    """The ``alpha_panda_state_snapshot_seconds{step}`` child; time a call in its ``time()``.

    Created on first use, so a flow exports only the steps it snapshots.
    """
    return _child(STATE_SNAPSHOT, step)
