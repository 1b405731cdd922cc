"""Feed flow: simulator or tick file -> ``market.ticks`` at a target rate.

``python -m bytewax.run dataflows.market_feed``. Settings: ``FEED_FILE``
(else the simulator), ``FEED_RATE`` ticks/s, ``FEED_INSTRUMENTS``,
``FEED_LIMIT`` (stop after N ticks), ``FEED_SEED``. Ticks are published as
full envelopes keyed by instrument token; bad lines go to ``market.ticks.dlq``.
"""

from __future__ import annotations

from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow

from connectors.feeds import PacedFileSource, PacedSimulatorSource
from connectors.simulator import MarketSpec
from dataflows import live
from dataflows.ingest import decode_ticks
from schemas.envelope import Outbound
from schemas.topics import MARKET_TICKS


def build(settings: Any) -> Dataflow:
    """Build the market feed for ``settings``."""
    servers = live.start(settings)
    live.await_servers(servers, kafka=True)
    flow = Dataflow("alpha_panda_market_feed")
    if settings.feed_file is not None:
        source: Any = PacedFileSource(settings.feed_file, settings.feed_rate)
    else:
        spec = MarketSpec(
            instruments=settings.feed_instruments, seed=settings.feed_seed, ticks_per_instrument=10**9
        )
        source = PacedSimulatorSource(spec, settings.feed_rate, limit=settings.feed_limit)
    raw = op.input("feed", flow, source)
    ticks, dead = decode_ticks("ingest", raw, service="market_feed", dlq_clock=live.live_dlq_clock)
    published = op.map("publish", ticks, lambda t: Outbound(MARKET_TICKS, t.key, t))
    live.attach_sinks(op.merge("published", published, dead), servers)
    return flow


__getattr__ = live.lazy_flow(__name__, build)
