"""Per-stage flow: ``market.ticks`` -> strategies -> ``<broker>.signals.raw``.

``python -m bytewax.run dataflows.strategy_runner``. Strategies load from
Postgres and reload on change; bad ticks go to ``market.ticks.dlq``. Each
signal carries its tick's Kafka create time in the ``ap-tick-created-ms`` header.
"""

from __future__ import annotations

from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow

from dataflows import live
from dataflows.clock import wall_clock
from dataflows.ingest import decode_ticks
from dataflows.outbound import to_outbound
from dataflows.signals import context_for, strategy_stage
from dataflows.tick_time import unstamped
from schemas.envelope import SignalEnvelope
from schemas.topics import MARKET_TICKS


def build(settings: Any) -> Dataflow:
    """Build the strategy runner for ``settings``."""
    servers, params, flow = live.begin(settings, "strategy_runner")
    configs = live.config_source(servers, settings)
    raw, rows = live.kafka_input_with(
        flow, "market_ticks", servers, [MARKET_TICKS], configs, tail=settings.kafka_tail
    )
    ticks, dead = decode_ticks(
        "ingest",
        raw,
        service=params.service,
        dlq_clock=live.live_dlq_clock,
        derive_ids=False,
        stamp_created=True,
    )
    context = context_for(
        live.initial_configs(servers),
        brokers=params.brokers,
        mark_interval=params.mark_interval,
        clock=wall_clock,
        service=params.service,
        shards=params.shards,
    )
    reloads = live.config_updates(rows)
    updates = op.map("contexts", reloads, context.with_configs) if reloads is not None else None
    routed = strategy_stage("strategies", ticks, context, updates=updates)
    signals = op.filter_map(
        "signals", routed, lambda kv: kv[1] if isinstance(unstamped(kv[1]), SignalEnvelope) else None
    )
    live.attach_sinks(op.merge("published", op.map("publish", signals, to_outbound), dead), servers)
    return flow


__getattr__ = live.lazy_flow(__name__, build)
