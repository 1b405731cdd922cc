"""Per-stage flow: ``<broker>.signals.raw`` (+ ``market.ticks`` marks) -> risk.

``python -m bytewax.run dataflows.risk_manager``. Out: ``<broker>.signals.validated``
and ``<broker>.signals.rejected``; undecodable signals go to
``<broker>.signals.raw.dlq``. Latest prices come from ``market.ticks``,
routed to the accounts that trade each instrument.
"""

from __future__ import annotations

from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow

from dataflows import live
from dataflows.accounts import account_of, risk_stage, to_outbound
from dataflows.clock import wall_clock
from schemas.envelope import SignalEnvelope
from schemas.topics import SIGNALS_RAW


def build(settings: Any) -> Dataflow:
    """Build the risk manager for ``settings``."""
    servers, params, flow = live.begin(settings, "risk_manager")
    signals, dead_signals = live.broker_events(
        flow, "signals", servers, settings, params, SIGNALS_RAW, SignalEnvelope
    )
    marks = live.marks_from_ticks(flow, servers, settings, params, every_tick=True)
    keyed_signals = op.map("signals_by_account", signals, lambda s: (account_of(s), s))
    decisions = risk_stage(
        "risk", op.merge("risk_inputs", marks, keyed_signals), params.account_steps(wall_clock)
    )
    live.attach_sinks(op.merge("published", op.map("publish", decisions, to_outbound), dead_signals), servers)
    return flow


__getattr__ = live.lazy_flow(__name__, build)
