"""Per-stage flow: ``<broker>.signals.validated`` -> orders, fills and the ledger.

``python -m bytewax.run dataflows.trading_engine``. Out:
``<broker>.orders.submitted|filled|failed`` and the Postgres ledger. Stateless:
order ids derive from the validated signal, so redelivery changes nothing.
Order events keep the validated signal's ``ap-tick-created-ms`` header.
"""

from __future__ import annotations

from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow

from dataflows import live
from dataflows.clock import wall_clock
from dataflows.outbound import to_outbound
from dataflows.tick_time import carry
from schemas.envelope import ValidatedEnvelope
from schemas.topics import SIGNALS_VALIDATED


def build(settings: Any) -> Dataflow:
    """Build the trading engine for ``settings``."""
    servers, params, flow = live.begin(settings, "trading_engine")
    validated, dead = live.broker_events(
        flow, "validated", servers, settings, params, SIGNALS_VALIDATED, ValidatedEnvelope
    )
    executor = params.account_steps(wall_clock).executor
    orders = op.flat_map("execute", validated, lambda v: carry(executor.execute, v))
    live.attach_sinks(
        op.merge("published", op.map("publish", orders, to_outbound), dead), servers, ledger=True
    )
    return flow


__getattr__ = live.lazy_flow(__name__, build)
