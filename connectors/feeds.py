"""Tick sources for ``dataflows.market_feed``: simulator, tick file, live streams, bar history.

- :class:`PacedSimulatorSource` and :class:`PacedFileSource` emit
  :class:`schemas.codec.RawMessage` items (producer-form JSON bytes) at a
  target rate in ticks/s, in batches every ``tick_s`` seconds of wall-clock
  time, and stop after ``limit`` ticks (or at the file's end).
- :class:`StreamFeedSource` runs a live market-data stream (Zerodha
  KiteTicker, Alpaca) inside the source and emits its items:
  :class:`schemas.events.MarketTick` and ``dlq_record`` envelopes.
- :class:`HistorySource` emits stored bars as ticks (close as
  ``last_price``) in time order at ``speed`` times real time, waiting with
  ``next_awake`` rather than sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition, batch_async

from connectors.marketdata.backfill import EventPacer, Speed
from connectors.marketdata.bars import Bar
from connectors.marketdata.streaming import FeedItem
from connectors.parquet_ticks import is_parquet, iter_parquet_ticks
from connectors.simulator import IST, MarketSpec, simulate_lines
from schemas.codec import RawMessage
from schemas.events import MarketTick
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
        batch: list[RawMessage] = []
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
    """A tick file's lines (JSONL, or Parquet rows) at ``rate`` lines/s (``rate`` 0 = as fast as possible)."""

    def __init__(self, path: Path, rate: float, *, tick_s: float = 0.02) -> None:
        self._path = Path(path)
        self._rate = rate
        self._tick_s = tick_s

    def list_parts(self) -> list[str]:
        """One partition: the file."""
        return [self._path.name]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _PacedPartition:
        """Open the file (resuming after ``resume_state`` lines, or rows of a Parquet file)."""
        if is_parquet(self._path):
            lines: Iterator[bytes] = (tick.line for tick in iter_parquet_ticks(self._path))
        else:
            lines = (line for line in self._path.open("rb") if line.strip())
        rate = self._rate if self._rate > 0 else 1e12
        return _PacedPartition(lines, rate, None, resume_state or 0, self._tick_s)


class _StreamPartition(StatefulSourcePartition[FeedItem, None]):
    """Drives one async stream on a private event loop, a batch per call."""

    def __init__(
        self, stream: AsyncIterator[FeedItem], limit: int | None, batch_timeout_s: float, batch_size: int
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self._stream = stream
        self._batches = batch_async(stream, timedelta(seconds=batch_timeout_s), batch_size, loop=self._loop)
        self._limit = limit
        self._ticks = 0

    def next_batch(self) -> list[FeedItem]:
        if self._limit is not None and self._ticks >= self._limit:
            raise StopIteration
        batch = next(self._batches)  # StopIteration when the stream ends; its errors propagate
        if self._limit is None:
            return batch
        kept: list[FeedItem] = []
        for item in batch:
            if isinstance(item, MarketTick):
                if self._ticks >= self._limit:
                    break
                self._ticks += 1
            kept.append(item)
        return kept

    def snapshot(self) -> None:
        return None

    def close(self) -> None:
        # Cancel the pending read (it closes the WebSocket on its way out),
        # then finalise the generator and the loop.
        tasks = asyncio.all_tasks(self._loop)
        for task in tasks:
            task.cancel()
        if tasks:
            self._loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        aclose = getattr(self._stream, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):
                self._loop.run_until_complete(aclose())
        self._loop.run_until_complete(self._loop.shutdown_asyncgens())
        self._loop.close()


class StreamFeedSource(FixedPartitionedSource[FeedItem, None]):
    """A live market-data stream (KiteTicker, Alpaca) as a one-partition Bytewax source.

    In: ``open_stream``, called once per run, returns the stream (e.g.
    ``KiteTickerFeed(config).stream``). Out: its items in arrival order,
    :class:`~schemas.events.MarketTick` and ``dlq_record`` envelopes for
    ``market.ticks.dlq``, gathered for up to ``batch_timeout_s`` seconds or
    ``batch_size`` items per batch. Stops after ``limit`` ticks (None:
    never). One partition, so one connection whatever the worker count.

    A live stream cannot rewind: the resume state is ``None`` and a
    restarted flow continues from the live edge. The stream's fatal errors
    (:class:`~connectors.marketdata.errors.FeedAuthenticationError`,
    :class:`~connectors.marketdata.errors.FeedGaveUpError`) stop the flow
    on purpose: retrying cannot help.
    """

    def __init__(
        self,
        name: str,
        open_stream: Callable[[], AsyncIterator[FeedItem]],
        *,
        limit: int | None = None,
        batch_timeout_s: float = 0.05,
        batch_size: int = 1000,
    ) -> None:
        self._name = name
        self._open_stream = open_stream
        self._limit = limit
        self._batch_timeout_s = batch_timeout_s
        self._batch_size = batch_size

    def list_parts(self) -> list[str]:
        """One partition: the stream."""
        return [self._name]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _StreamPartition:
        """Open the stream (it connects on the first batch)."""
        return _StreamPartition(self._open_stream(), self._limit, self._batch_timeout_s, self._batch_size)


class _HistoryPartition(StatefulSourcePartition[MarketTick, int]):
    def __init__(  # the partition's whole configuration
        self,
        bars: Iterator[Bar],
        resume: int,
        pacer: EventPacer,
        limit: int | None,
        batch_size: int,
        clock: Callable[[], float],
    ) -> None:
        self._bars = bars
        self._sent = resume
        for _ in range(resume):
            next(self._bars, None)
        self._pacer = pacer
        self._limit = limit
        self._batch_size = batch_size
        self._clock = clock
        self._pending: Bar | None = None
        self._exhausted = False
        self._next_awake: datetime | None = None

    def next_batch(self) -> list[MarketTick]:
        if self._exhausted or (self._limit is not None and self._sent >= self._limit):
            raise StopIteration
        self._next_awake = None
        now = self._clock()
        batch: list[MarketTick] = []
        while len(batch) < self._batch_size and (self._limit is None or self._sent < self._limit):
            if self._pending is None:
                self._pending = next(self._bars, None)
                if self._pending is None:
                    if not batch:
                        raise StopIteration
                    self._exhausted = True
                    break
            wait = self._pacer.delay(self._pending.timestamp, now)
            if wait > 0:
                # Never sleep past an epoch: a sleeping input holds the whole flow.
                self._next_awake = datetime.now(UTC) + timedelta(seconds=min(wait, 0.05))
                break
            batch.append(self._pending.to_tick())
            self._pending = None
            self._sent += 1
        return batch

    def next_awake(self) -> datetime | None:
        return self._next_awake

    def snapshot(self) -> int:
        return self._sent

    def close(self) -> None:
        close = getattr(self._bars, "close", None)
        if close is not None:
            close()


class HistorySource(FixedPartitionedSource[MarketTick, int]):
    """Stored bars as ticks, in time order, at ``speed`` x real time (``"max"``: no waiting).

    In: ``open_bars``, called once per run, returns bars in non-decreasing
    time order (e.g. :func:`connectors.marketdata.store.stored_bars`).
    Out: :meth:`~connectors.marketdata.bars.Bar.to_tick` of each, close as
    ``last_price`` and the bar's start as ``timestamp``, at most
    ``batch_size`` per batch and ``limit`` in all. The worker is never put
    to sleep: a bar not yet due sets ``next_awake``. The resume state is the
    number of ticks emitted; a resumed run skips that many bars.
    """

    def __init__(  # the source's whole configuration
        self,
        name: str,
        open_bars: Callable[[], Iterator[Bar]],
        *,
        speed: Speed = "max",
        limit: int | None = None,
        batch_size: int = 1000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._name = name
        self._open_bars = open_bars
        self._speed = EventPacer(speed).speed  # validates now, not in the worker
        self._limit = limit
        self._batch_size = batch_size
        self._clock = clock

    def list_parts(self) -> list[str]:
        """One partition: the history, which has one order."""
        return [self._name]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _HistoryPartition:
        """Open the history (resuming after ``resume_state`` ticks)."""
        return _HistoryPartition(
            self._open_bars(),
            resume_state or 0,
            EventPacer(self._speed),
            self._limit,
            self._batch_size,
            self._clock,
        )
