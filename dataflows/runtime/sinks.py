"""Outputs of the live flows: Kafka for every message, Redis and the ledger for some, with retries and DLQ."""

from __future__ import annotations

from datetime import UTC, datetime

import bytewax.operators as op
from bytewax.dataflow import Stream

from connectors.dlq import Resilience
from connectors.equity import EquityHistorySink
from connectors.fan_out import FanOutSink, Route, only
from connectors.kafka.sink import kafka_sink
from connectors.postgres import LedgerSink
from connectors.redis_portfolio import RedisPortfolioSink
from dataflows.metrics import DLQ_MESSAGES, RETRIES, observe_published
from dataflows.runtime.retry import retry_config
from dataflows.runtime.servers import Servers
from dataflows.settings import Settings, get_settings
from schemas.codec import RawMessage
from schemas.envelope import (
    FailedEnvelope,
    FilledEnvelope,
    PnlEnvelope,
    Published,
    SubmittedEnvelope,
)


def resilience(servers: Servers, settings: Settings | None = None) -> Resilience:
    """Retries per ``settings``, dead letters to Kafka, counted in the Prometheus metrics."""
    settings = settings or get_settings()
    return Resilience(
        retry=retry_config(settings),
        kafka=servers.kafka,
        service=settings.service_name,
        on_retry=lambda error_type: RETRIES.labels(error_type).inc(),
        on_dead_letter=lambda topic, broker, error_type: DLQ_MESSAGES.labels(topic, broker, error_type).inc(),
    )


def attach_sinks(
    published: Stream[Published],
    servers: Servers,
    *,
    redis: bool = False,
    ledger: bool = False,
    settings: Settings | None = None,
) -> None:
    """Publish every message to Kafka; P&L snapshots also to Redis, orders also to the ledger.

    ``published`` holds messages, or lists of them: the all-in-one flow
    passes each batch of its hot path as one item, so the engine's cost
    here is paid per batch, not per message. Every message is counted first
    (:func:`dataflows.metrics.observe_published`).

    With ``redis``, every snapshot is also appended to the Postgres
    ``equity_history`` table (the dashboard's equity curves).

    All of it is one output step (:class:`connectors.fan_out.FanOutSink`):
    the Postgres tables are written on threads of their own while Kafka and
    Redis are written, and a batch is done when every destination has it.

    Redis and ledger writes retry per ``settings`` (``RETRY_*``); when that
    gives up, the batch goes to the DLQ of each message's topic and the flow
    goes on (see :mod:`connectors.dlq`).
    """
    settings = settings or get_settings()
    timeout = {"delivery.timeout.ms": settings.kafka_delivery_timeout_ms}
    routes = [Route("kafka", kafka_sink(servers.kafka, timeout))]
    if redis:
        snapshots = only(PnlEnvelope)
        portfolios = RedisPortfolioSink(servers.redis, resilience=resilience(servers, settings))
        history = EquityHistorySink(servers.postgres, resilience=resilience(servers, settings))
        routes.append(Route("redis_portfolios", portfolios, snapshots))
        routes.append(Route("equity_history", history, snapshots, background=True))
    if ledger:
        orders = only(SubmittedEnvelope, FilledEnvelope, FailedEnvelope)
        book = LedgerSink(servers.postgres, resilience=resilience(servers, settings))
        routes.append(Route("postgres_ledger", book, orders, background=True))
    op.output("outputs", published, FanOutSink(routes, observe=observe_published))


def live_dlq_clock(_message: RawMessage) -> datetime:
    """Dead letters of live flows are stamped with wall-clock time."""
    return datetime.now(UTC)
