"""What every live dataflow starts with: start-up, params, price marks, and the lazy ``flow``.

The pieces live in :mod:`dataflows.runtime` (servers, Kafka inputs, sinks,
strategy reload) and are re-exported here, so a flow module imports one
module. Reads :class:`dataflows.settings.Settings`. A server URL left empty
falls back to the local stack started by ``alpha-panda up`` under ``DATA_DIR``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream

from connectors.kafka.config import use_client_security
from dataflows.metrics import report_input_lag, serve_metrics
from dataflows.params import PipelineParams
from dataflows.runtime.collector import tune_collector
from dataflows.runtime.inputs import broker_events, kafka_batches, kafka_input, kafka_input_with
from dataflows.runtime.reload import config_source, config_updates, initial_configs, parse_configs
from dataflows.runtime.servers import Servers, await_servers, resolve_servers, wait_for
from dataflows.runtime.sinks import attach_sinks, live_dlq_clock, resilience
from dataflows.settings import Settings

__all__ = [
    "Servers",
    "attach_sinks",
    "await_servers",
    "begin",
    "broker_events",
    "config_source",
    "config_updates",
    "initial_configs",
    "kafka_batches",
    "kafka_input",
    "kafka_input_with",
    "lazy_flow",
    "live_dlq_clock",
    "marks_from_ticks",
    "parse_configs",
    "resilience",
    "resolve_servers",
    "start",
    "wait_for",
]

log = logging.getLogger("alpha_panda.dataflows")


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

    raw, rows = kafka_input_with(
        flow,
        "market_ticks",
        servers,
        [MARKET_TICKS],
        config_source(servers, settings),
        tail=settings.kafka_tail,
    )
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
    reloads = config_updates(rows)
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


def lazy_flow(module: str, build: Callable[[Settings], Dataflow]) -> Callable[[str], Any]:
    """Return a module ``__getattr__`` that builds ``flow`` on first access.

    ``python -m bytewax.run dataflows.<name>`` looks up ``flow``; building it
    lazily means importing a flow module reads no settings and opens nothing.
    """

    def module_getattr(name: str) -> Any:
        if name == "flow":
            from dataflows.settings import get_settings

            flow = build(get_settings())
            tune_collector()  # once the flow is built, just before bytewax.run runs it
            return flow
        msg = f"module {module!r} has no attribute {name!r}"
        raise AttributeError(msg)

    return module_getattr
