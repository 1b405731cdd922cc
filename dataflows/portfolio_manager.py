"""Per-stage flow: ``<broker>.orders.filled`` (+ ``market.ticks`` marks) -> P&L.

``python -m bytewax.run dataflows.portfolio_manager``. Out:
``<broker>.pnl.snapshots`` and Redis ``<broker>:portfolio:<strategy_id>``.
A redelivered fill (same order id) is ignored, so portfolios never
double-count. A fill's snapshot keeps the fill's ``ap-tick-created-ms`` header.
"""

from __future__ import annotations

from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow

from dataflows import live
from dataflows.account_steps import account_of
from dataflows.accounts import portfolio_stage
from dataflows.clock import wall_clock
from dataflows.outbound import to_outbound
from dataflows.tick_time import unstamped
from schemas.envelope import FilledEnvelope
from schemas.topics import ORDERS_FILLED


def build(settings: Any) -> Dataflow:
    """Build the portfolio manager for ``settings``."""
    servers, params, flow = live.begin(settings, "portfolio_manager", redis=True)
    fills, dead_fills = live.broker_events(
        flow, "fills", servers, settings, params, ORDERS_FILLED, FilledEnvelope
    )
    marks = live.marks_from_ticks(flow, servers, settings, params)
    keyed_fills = op.map("fills_by_account", fills, lambda f: (account_of(unstamped(f)), f))
    snapshots = portfolio_stage(
        "portfolio", op.merge("books_inputs", marks, keyed_fills), params.account_steps(wall_clock)
    )
    published = op.merge("published", op.map("publish", snapshots, to_outbound), dead_fills)
    live.attach_sinks(published, servers, redis=True)
    return flow


__getattr__ = live.lazy_flow(__name__, build)
