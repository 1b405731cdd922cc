"""The cyclic garbage collector, tuned for a dataflow's hot path.

A batch of ticks allocates thousands of short-lived objects (events,
envelopes, outbound messages) and frees them by reference counting; almost
none are in reference cycles. With CPython's default first-generation
threshold of 700 allocations the collector still runs several times per
batch, and each older-generation pass walks every live object of the flow's
state. On the peers' tape that was about a third of a replay's time
(``bench/PROFILE.md``). A larger threshold keeps cycles collected, only
less often, and freezing what start-up built (modules, settings, the
flow's graph) takes it out of every later pass.
"""

from __future__ import annotations

import gc
from typing import Final

FIRST_GENERATION: Final = 10_000
"""Allocations (net of frees) between two young-generation collections (CPython's default: 700)."""

OLDER_GENERATIONS: Final = (10, 10)
"""CPython's defaults for the two older generations, kept."""


def tune_collector() -> None:
    """Raise the young generation's threshold and freeze everything allocated so far.

    Call it once a flow is built, just before it runs; it is idempotent.
    """
    gc.set_threshold(FIRST_GENERATION, *OLDER_GENERATIONS)
    gc.freeze()
