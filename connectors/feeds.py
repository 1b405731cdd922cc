"""Paced tick sources for ``dataflows.market_feed``: simulator or tick file.

Both emit :class:`schemas.codec.RawMessage` items (producer-form JSON
bytes) at a target rate in ticks/s, in batches every ``tick_s`` seconds of
wall-clock time, and stop after ``limit`` ticks (or at the file's end).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from connectors.simulator import IST, MarketSpec, simulate_lines
from schemas.codec import RawMessage
from schemas.topics import MARKET_TICKS


class _PacedPartition(StatefulSourcePartition[RawMessage, int]):
    def __init__(
        self, lines: Iterator[bytes], rate: float, limit: int | None, resume: int, tick_s: float
    ) -> None:
        self._lines = lines
        self._sent = resume
        for _ in range(resume):
            next(self._lines, None)
        self._rate = rate
        self._limit = limit
        self._tick_s = tick_s
        self._started = time.monotonic()
        self._sent_at_start = resume
        self._next_awake = datetime.now(UTC)

    def next_batch(self) -> list[RawMessage]:
        if self._limit is not None and self._sent >= self._limit:
            raise StopIteration
        due = self._sent_at_start + int((time.monotonic() - self._started) * self._rate) + 1
        if self._limit is not None:
            due = min(due, self._limit)
        batch = []
        while self._sent < due:
            line = next(self._lines, None)
            if line is None:
                if not batch:
                    raise StopIteration
                break
            self._sent += 1
            batch.append(RawMessage(MARKET_TICKS, None, line.rstrip(b"\n"), None, self._sent))
        self._next_awake = datetime.now(UTC) + timedelta(seconds=self._tick_s)
        return batch

    def next_awake(self) -> datetime | None:
        return self._next_awake

    def snapshot(self) -> int:
        return self._sent


class PacedSimulatorSource(FixedPartitionedSource[RawMessage, int]):
    """Simulated ticks at ``rate`` ticks/s, timestamped from now, at most ``limit``.

    The walk is the deterministic :func:`connectors.simulator.simulate`; each
    instrument's ticks are ``instruments / rate`` seconds apart in event time,
    so event time keeps pace with wall-clock time.
    """

    def __init__(
        self, spec: MarketSpec, rate: float, *, limit: int | None = None, tick_s: float = 0.02
    ) -> None:
        self._spec = spec
        self._rate = rate
        self._limit = limit
        self._tick_s = tick_s

    def list_parts(self) -> list[str]:
        """One partition: the simulated market."""
        return ["simulator"]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _PacedPartition:
        """Start the walk now (resuming after ``resume_state`` ticks)."""
        spec = replace(
            self._spec,
            start=datetime.now(IST).replace(microsecond=0),
            interval=timedelta(seconds=self._spec.instruments / self._rate),
        )
        return _PacedPartition(simulate_lines(spec), self._rate, self._limit, resume_state or 0, self._tick_s)


class PacedFileSource(FixedPartitionedSource[RawMessage, int]):
    """A tick file's lines at ``rate`` lines/s (``rate`` 0 = as fast as possible)."""

    def __init__(self, path: Path, rate: float, *, tick_s: float = 0.02) -> None:
        self._path = Path(path)
        self._rate = rate
        self._tick_s = tick_s

    def list_parts(self) -> list[str]:
        """One partition: the file."""
        return [self._path.name]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _PacedPartition:
        """Open the file (resuming after ``resume_state`` lines)."""
        lines = (line for line in self._path.open("rb") if line.strip())
        rate = self._rate if self._rate > 0 else 1e12
        return _PacedPartition(lines, rate, None, resume_state or 0, self._tick_s)
