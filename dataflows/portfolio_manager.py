"""Per-stage flow: ``<broker>.orders.filled`` (+ ``market.ticks`` marks) -> P&L.

``python -m bytewax.run dataflows.portfolio_manager``. Out:
``<broker>.pnl.snapshots`` and Redis ``<broker>:portfolio:<strategy_id>``.
A redelivered fill (same order id) is ignored, so portfolios never
double-count.
"""

from __future__ import annotations

from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow

from dataflows import live
from dataflows.accounts import account_of, portfolio_stage, to_outbound
from dataflows.clock import wall_clock
from dataflows.ingest import decode_events
from schemas.envelope import FilledEnvelope
from schemas.topics import ORDERS_FILLED, broker_topic


def build(settings: Any) -> Dataflow:
    """Build the portfolio manager for ``settings``."""
    servers, params, flow = live.begin(settings, "portfolio_manager", redis=True)
    raw_fills = live.kafka_input(
        flow,
        "fills",
        servers,
        [broker_topic(b, ORDERS_FILLED) for b in params.brokers],
        tail=settings.kafka_tail,
    )
    fills, dead_fills = decode_events("fills_in", raw_fills, FilledEnvelope, service=params.service)
    marks = live.marks_from_ticks(flow, servers, settings, params)
    keyed_fills = op.map("fills_by_account", fills, lambda f: (account_of(f), f))
    snapshots = portfolio_stage(
        "portfolio", op.merge("books_inputs", marks, keyed_fills), params.account_steps(wall_clock)
    )
    published = op.merge("published", op.map("publish", snapshots, to_outbound), dead_fills)
    live.attach_sinks(published, servers, redis=True)
    return flow


__getattr__ = live.lazy_flow(__name__, build)
