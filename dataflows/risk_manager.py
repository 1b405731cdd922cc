"""Per-stage flow: ``<broker>.signals.raw`` (+ ``market.ticks`` marks) -> risk.

``python -m bytewax.run dataflows.risk_manager``. A failed order on
``<broker>.orders.failed`` releases what risk booked for it. Out: ``<broker>.signals.validated``
and ``<broker>.signals.rejected``; undecodable signals go to
``<broker>.signals.raw.dlq``. Latest prices come from ``market.ticks``,
routed to the accounts that trade each instrument. Decisions keep their
signal's ``ap-tick-created-ms`` header.
"""

from __future__ import annotations

from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow

from dataflows import live
from dataflows.account_steps import account_of
from dataflows.accounts import risk_stage
from dataflows.clock import wall_clock
from dataflows.outbound import to_outbound
from dataflows.tick_time import unstamped
from schemas.envelope import FailedEnvelope, SignalEnvelope
from schemas.topics import ORDERS_FAILED, SIGNALS_RAW


def build(settings: Any) -> Dataflow:
    """Build the risk manager for ``settings``."""
    servers, params, flow = live.begin(settings, "risk_manager")
    signals, dead_signals = live.broker_events(
        flow, "signals", servers, settings, params, SIGNALS_RAW, SignalEnvelope
    )
    failed, dead_failed = live.broker_events(
        flow, "failed", servers, settings, params, ORDERS_FAILED, FailedEnvelope
    )
    marks = live.marks_from_ticks(flow, servers, settings, params, every_tick=True)
    keyed_signals = op.map("signals_by_account", signals, lambda s: (account_of(unstamped(s)), s))
    keyed_failed = op.map("failed_by_account", failed, lambda f: (account_of(unstamped(f)), f))
    inputs = op.merge("risk_inputs", marks, keyed_signals, keyed_failed)
    decisions = risk_stage("risk", inputs, params.account_steps(wall_clock))
    published = op.merge("published", op.map("publish", decisions, to_outbound), dead_signals, dead_failed)
    live.attach_sinks(published, servers)
    return flow


__getattr__ = live.lazy_flow(__name__, build)
