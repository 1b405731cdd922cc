"""Creation-time clocks for envelopes.

Replays stamp each event with the event time of its cause, so two runs of
the same input are byte-identical; live flows stamp wall-clock time, which
is what tick-to-fill latency is measured with.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[datetime], datetime]
"""Takes the event time of the cause, returns the creation time to stamp."""


def event_time_clock(event_time: datetime) -> datetime:
    """Stamp the cause's event time (deterministic replays)."""
    return event_time


def wall_clock(event_time: datetime) -> datetime:  # Clock signature
    """Stamp the current UTC time (live flows)."""
    return datetime.now(UTC)
