"""Wiring shared by the live dataflows: servers, Kafka inputs, sinks, configs.

Reads :class:`alpha_panda.settings.Settings` (only ``dataflows/`` and the
CLI do). A server URL left empty falls back to the local stack started by
``alpha-panda up`` under ``DATA_DIR``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaSourceMessage
from bytewax.dataflow import Dataflow, Stream

from connectors.dlq import Resilience
from connectors.equity import EquityHistorySink
from connectors.kafka import (
    kafka_sink,
    kafka_source,
    raise_if_offset_lost,
    raw_message,
    use_client_security,
)
from connectors.postgres import LedgerSink, StrategyConfigSource, load_strategies
from connectors.redis_portfolio import RedisPortfolioSink
from dataflows.metrics import (
    DLQ_MESSAGES,
    INPUT_POSITIONS,
    MESSAGES_IN,
    RETRIES,
    input_counter,
    observe_published,
    report_input_lag,
    serve_metrics,
)
from dataflows.params import PipelineParams
from dataflows.runtime.retry import retry_config
from dataflows.runtime.servers import Servers, resolve_servers
from dataflows.settings import Settings
from operators.errors import ConfigError
from operators.strategy import StrategyConfig
from schemas.codec import RawBatch, RawMessage
from schemas.envelope import FailedEnvelope, FilledEnvelope, Outbound, PnlEnvelope, SubmittedEnvelope

log = logging.getLogger("alpha_panda.dataflows")


def wait_for(  # noqa: PLR0913 - each knob is a plain keyword
    name: str,
    where: str,
    probe: Callable[[], None],
    *,
    timeout_s: float = 120.0,
    first_delay_s: float = 0.5,
    secret_urls: Sequence[str] = (),
) -> None:
    """Call ``probe`` until it succeeds, backing off exponentially; say which server and where.

    ``where`` is printed as given (redact it first); errors are printed with
    the secrets of ``secret_urls`` masked (:func:`connectors.errors.describe_error`).

    :raises TimeoutError: still unreachable after ``timeout_s``.
    """
    from connectors.errors import describe_error

    delay, deadline, attempt = first_delay_s, time.monotonic() + timeout_s, 1
    while True:
        try:
            probe()
        except Exception as err:
            reason = describe_error(err, *secret_urls)
            if time.monotonic() + delay > deadline:
                msg = f"{name} at {where} still unreachable after {timeout_s:.0f} s: {reason}"
                raise TimeoutError(msg) from None
            log.warning(
                "%s at %s unreachable (attempt %d), retrying in %.1f s: %s",
                *(name, where, attempt, delay, reason),
            )
            time.sleep(delay)
            delay, attempt = min(delay * 2, 10.0), attempt + 1
        else:
            if attempt > 1:
                log.warning("%s at %s is reachable; starting", name, where)
            return


def await_servers(
    servers: Servers, *, kafka: bool = True, redis: bool = False, postgres: bool = False
) -> None:
    """Block until the servers a flow needs answer (clear log lines while waiting)."""
    from connectors.errors import redact_url
    from connectors.probes import probe_kafka, probe_postgres, probe_redis

    if kafka:
        wait_for("Kafka", servers.kafka, lambda: probe_kafka(servers.kafka))
    if redis:
        where = redact_url(servers.redis)
        wait_for("Redis", where, lambda: probe_redis(servers.redis), secret_urls=[servers.redis])
    if postgres:
        wait_for(
            "PostgreSQL",
            redact_url(servers.postgres),
            lambda: probe_postgres(servers.postgres),
            secret_urls=[servers.postgres],
        )


def kafka_input(
    flow: Dataflow, step_id: str, servers: Servers, topics: Iterable[str], *, tail: bool = True
) -> Stream[RawMessage]:
    """Read ``topics`` as :class:`RawMessage` items; consumer errors are logged and skipped.

    Except one: a position outside the log (out of range, or a resume past
    the end of a broker that lost data) stops the flow with
    :class:`connectors.errors.OffsetOutOfRangeError`, never a silent jump.
    ``tail=False`` ends the input at the current end of every partition.
    """
    messages = op.input(step_id, flow, kafka_source(servers.kafka, list(topics), tail=tail))
    counted: dict[str, Callable[[], None]] = {}

    def keep(message: Any) -> RawMessage | None:
        if isinstance(message, KafkaSourceMessage):
            raw = raw_message(message)
            inc = counted.get(raw.topic)
            if inc is None:
                inc = counted[raw.topic] = input_counter(raw.topic)
            inc()
            INPUT_POSITIONS[(raw.topic, raw.partition or 0)] = raw.offset or 0
            return raw
        raise_if_offset_lost(step_id, message)
        log.warning("Kafka consumer error in %s: %s", step_id, message)
        return None

    return op.filter_map(f"{step_id}_raw", messages, keep)


def kafka_batches(
    flow: Dataflow, step_id: str, servers: Servers, topics: Iterable[str], *, tail: bool = True
) -> Stream[RawBatch]:
    """Read ``topics`` as one :class:`RawBatch` per poll of a partition; consumer errors are logged.

    Counts messages in (``alpha_panda_messages_in``) and records read
    positions for the lag gauge, once per batch.
    """
    batches = op.input(step_id, flow, kafka_source(servers.kafka, list(topics), tail=tail, batched=True))
    counters: dict[str, Any] = {}

    def count(batch: RawBatch) -> RawBatch:
        counter = counters.get(batch.topic)
        if counter is None:
            counter = counters[batch.topic] = MESSAGES_IN.labels(batch.topic)
        counter.inc(len(batch.values))
        if batch.partitions is not None:
            for partition, offset in zip(batch.partitions, batch.offsets, strict=True):
                INPUT_POSITIONS[(batch.topic, partition)] = offset
        return batch

    return op.map(f"{step_id}_counted", batches, count)


def parse_configs(rows: Sequence[dict[str, Any]]) -> list[StrategyConfig]:
    """Validate configuration rows; a bad row is logged and skipped, not fatal."""
    configs = []
    for row in rows:
        try:
            configs.append(StrategyConfig.from_mapping(row))
        except ConfigError as err:
            log.error("skipping strategy configuration %r: %s", row.get("id"), err)
    return configs


def initial_configs(servers: Servers) -> list[StrategyConfig]:
    """The strategy set at start, read from Postgres."""
    return parse_configs(load_strategies(servers.postgres))


def config_updates(
    flow: Dataflow, servers: Servers, settings: Settings
) -> Stream[list[StrategyConfig]] | None:
    """New strategy sets whenever ``strategy_configurations`` changes (polled).

    ``None`` when the flow does not tail Kafka: a finite run keeps its start set.
    """
    if not settings.kafka_tail:
        return None
    rows = op.input(
        "strategy_configurations", flow, StrategyConfigSource(servers.postgres, settings.strategy_reload_s)
    )
    return op.map("parse_configurations", rows, parse_configs)


def resilience(servers: Servers, settings: Settings | None = None) -> Resilience:
    """Retries per ``settings``, dead letters to Kafka, counted in the Prometheus metrics."""
    from dataflows.settings import get_settings

    settings = settings or get_settings()
    return Resilience(
        retry=retry_config(settings),
        kafka=servers.kafka,
        service=settings.service_name,
        on_retry=lambda error_type: RETRIES.labels(error_type).inc(),
        on_dead_letter=lambda topic, broker, error_type: DLQ_MESSAGES.labels(topic, broker, error_type).inc(),
    )


def attach_sinks(
    published: Stream[Outbound],
    servers: Servers,
    *,
    redis: bool = False,
    ledger: bool = False,
    settings: Settings | None = None,
) -> None:
    """Publish every message to Kafka; P&L snapshots also to Redis, orders also to the ledger.

    Every message is counted first (:func:`dataflows.metrics.observe_published`).

    With ``redis``, every snapshot is also appended to the Postgres
    ``equity_history`` table (the dashboard's equity curves).

    Redis and ledger writes retry per ``settings`` (``RETRY_*``); when that
    gives up, the batch goes to the DLQ of each message's topic and the flow
    goes on (see :mod:`connectors.dlq`).
    """
    from dataflows.settings import get_settings

    settings = settings or get_settings()
    timeout = {"delivery.timeout.ms": settings.kafka_delivery_timeout_ms}
    op.inspect("metrics", published, lambda _step, item: observe_published(item))
    op.output("kafka", published, kafka_sink(servers.kafka, timeout))
    if redis:
        snapshots = op.filter("pnl_for_redis", published, lambda o: isinstance(o.envelope, PnlEnvelope))
        sink = RedisPortfolioSink(servers.redis, resilience=resilience(servers, settings))
        op.output("redis_portfolios", snapshots, sink)
        history = EquityHistorySink(servers.postgres, resilience=resilience(servers, settings))
        op.output("equity_history", snapshots, history)
    if ledger:
        orders = op.filter(
            "orders_for_ledger",
            published,
            lambda o: isinstance(o.envelope, SubmittedEnvelope | FilledEnvelope | FailedEnvelope),
        )
        op.output(
            "postgres_ledger", orders, LedgerSink(servers.postgres, resilience=resilience(servers, settings))
        )


def live_dlq_clock(_message: RawMessage) -> datetime:
    """Dead letters of live flows are stamped with wall-clock time."""
    return datetime.now(UTC)


def start(settings: Settings) -> Servers:
    """Common start-up of a live flow: logging, Kafka security, metrics endpoint, servers."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    use_client_security(settings.kafka_security())
    serve_metrics(settings.metrics_port, settings.metrics_host)
    servers = resolve_servers(settings)
    if settings.metrics_port:
        report_input_lag(servers.kafka)
    return servers


def marks_from_ticks(
    flow: Dataflow, servers: Servers, settings: Settings, params: PipelineParams, *, every_tick: bool = False
) -> Stream[tuple[str, Any]]:
    """``market.ticks`` as ``(account_id, Mark)`` for the per-stage risk and portfolio flows.

    Marks follow the live strategy set (hot reload). Bad ticks are dropped
    here: the strategy runner, which reads the same topic, dead-letters them.
    ``every_tick`` (risk) marks each tick, so the price-deviation check
    compares with the latest tick whatever ``MARK_INTERVAL_S`` is; else
    marks are throttled to one per mark interval of event time.
    """
    from dataflows.clock import wall_clock
    from dataflows.ingest import decode_ticks
    from dataflows.signals import context_for, strategy_stage
    from schemas.topics import MARKET_TICKS

    raw = kafka_input(flow, "market_ticks", servers, [MARKET_TICKS], tail=settings.kafka_tail)
    ticks, _dropped = decode_ticks(
        "ticks_in", raw, service=params.service, dlq_clock=live_dlq_clock, derive_ids=False
    )
    context = context_for(
        initial_configs(servers),
        brokers=params.brokers,
        mark_interval=timedelta(0) if every_tick else params.mark_interval,
        clock=wall_clock,
        service=params.service,
        emit_signals=False,
        idle_mark_after=params.idle_mark_after,
    )
    reloads = config_updates(flow, servers, settings)
    updates = op.map("contexts", reloads, context.with_configs) if reloads is not None else None
    return strategy_stage("marks", ticks, context, updates=updates)


def begin(settings: Settings, name: str, *, redis: bool = False) -> tuple[Servers, PipelineParams, Dataflow]:
    """Start a live flow ``name``: wait for its servers; return them, its params and the flow.

    Every live flow needs Kafka and Postgres (strategy configuration);
    ``redis`` adds Redis. Params are :class:`dataflows.pipeline.PipelineParams`.
    """
    from dataflows.zerodha import halt_flags, zerodha_route  # imports the Kite connector

    servers = start(settings)
    await_servers(servers, kafka=True, redis=redis, postgres=True)
    params = PipelineParams.from_settings(settings, live=True)
    flags = halt_flags(settings, servers)
    route = zerodha_route(settings, servers) if settings.zerodha_live else None
    params = dataclasses.replace(params, zerodha_route=route, halts=flags.reason)
    return servers, params, Dataflow(f"alpha_panda_{name}")


def broker_events(
    flow: Dataflow,
    step_id: str,
    servers: Servers,
    settings: Settings,
    params: PipelineParams,
    stage: str,
    expected: type[Any],
) -> tuple[Stream[Any], Stream[Any]]:
    """Read ``<broker>.<stage>`` of every active broker; return (envelopes, dead letters).

    Undecodable messages become dead letters for ``<broker>.<stage>.dlq``.
    """
    from dataflows.ingest import decode_events
    from schemas.topics import broker_topic

    topics = [broker_topic(broker, stage) for broker in params.brokers]
    raw = kafka_input(flow, step_id, servers, topics, tail=settings.kafka_tail)
    return decode_events(f"{step_id}_in", raw, expected, service=params.service)


def lazy_flow(module: str, build: Callable[[Settings], Dataflow]) -> Callable[[str], Any]:
    """Return a module ``__getattr__`` that builds ``flow`` on first access.

    ``python -m bytewax.run dataflows.<name>`` looks up ``flow``; building it
    lazily means importing a flow module reads no settings and opens nothing.
    """

    def module_getattr(name: str) -> Any:
        if name == "flow":
            from dataflows.settings import get_settings

            return build(get_settings())
        msg = f"module {module!r} has no attribute {name!r}"
        raise AttributeError(msg)

    return module_getattr
