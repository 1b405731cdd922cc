"""What the timed runs are made of: ticks in memory, the flows, a counting sink, the timer.

Ticks come from :mod:`connectors.simulator` (deterministic) and are turned
into engine items *before* timing starts: :class:`schemas.codec.RawBatch`
items of :data:`BATCH_SIZE` lines for the pipeline (what
:class:`connectors.files.TickFileSource` emits), one
:class:`schemas.codec.RawMessage` per tick for the bare flow. Outputs go to
a :class:`CountingSink`, so neither file reading nor JSON encoding and disk
writes are measured. Time is ``time.perf_counter`` around
``run_main``/``cluster_main`` only.
"""

from __future__ import annotations

import dataclasses
import gc
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import cluster_main, run_main

# The module, not names from it: `from dataflows.pipeline import X` makes Python ask the
# module for `__path__`, which its lazy `__getattr__` answers by importing dataflows.live
# (Kafka, Redis, Postgres clients).
import dataflows.pipeline as pipeline
from connectors.simulator import MarketSpec, simulate_lines
from dataflows.clock import event_time_clock
from dataflows.params import PipelineParams
from dataflows.runtime.collector import tune_collector
from operators.portfolio import PortfolioConfig
from operators.risk import RiskConfig
from operators.strategy import StrategyConfig
from schemas.codec import RawBatch, RawMessage, decode_tick
from schemas.envelope import TickEnvelope
from schemas.topics import MARKET_TICKS

BATCH_SIZE = 4096
"""Ticks per engine batch, the default of :class:`connectors.files.TickFileSource`."""

STRATEGIES_PER_INSTRUMENT = 2
SOURCE_NOTE = (
    f"in-memory source built before timing (1 partition; pipeline: RawBatch items of {BATCH_SIZE} "
    f"ticks; bare flow: one RawMessage item per tick, {BATCH_SIZE} a source batch); "
    "counting sink (no encoding, no disk)"
)


# --- ticks in memory --------------------------------------------------------------------


@dataclass(frozen=True)
class Market:
    """Simulated tick lines (no trailing newline), in the order a tick file would hold them."""

    spec: MarketSpec
    lines: list[bytes]

    @property
    def ticks(self) -> int:
        """Number of ticks."""
        return len(self.lines)

    def batches(self, size: int = BATCH_SIZE) -> list[RawBatch]:
        """The lines as :class:`RawBatch` items of ``size``; offsets are 1-based line numbers."""
        return [
            RawBatch(
                MARKET_TICKS, self.lines[at : at + size], list(range(at + 1, min(at + size, self.ticks) + 1))
            )
            for at in range(0, self.ticks, size)
        ]

    def messages(self) -> list[RawMessage]:
        """One :class:`RawMessage` per line (the bare flow's items)."""
        return [RawMessage(MARKET_TICKS, None, line, 0, n) for n, line in enumerate(self.lines, start=1)]


def market(instruments: int, ticks: int, seed: int = 7) -> Market:
    """Simulated ticks: ``ticks // instruments`` (at least 1) per instrument, round-robin."""
    spec = MarketSpec(instruments=instruments, ticks_per_instrument=max(1, ticks // instruments), seed=seed)
    return Market(spec, [line.rstrip(b"\n") for line in simulate_lines(spec)])


TRADING_CASH: Final = Decimal(1_000_000_000)
"""Every bench account's starting cash: with DESIGN's 1,000,000 the accounts run out within seconds."""

TRADING: Final = PipelineParams(
    risk=RiskConfig(
        max_position_size=1_000_000_000,
        max_daily_trades=1_000_000_000,
        max_price_deviation=1.0,
        starting_cash=TRADING_CASH,
    ),
    portfolio=PortfolioConfig(starting_cash=TRADING_CASH),
)
"""The bench's trading settings: both brokers, one shard, risk limits opened and :data:`TRADING_CASH`.

With DESIGN's defaults (50 trades a day, 1,000,000 of cash) the bench market
would hardly trade: at 100 instruments, 100 of each broker's 14,640 signals
fill and the risk filter rejects the rest. Opened, a signal is rejected only
by the rule itself (selling what the account does not hold): 13,055 of 14,640
fill at 100 instruments, 5,285 of 10,486 at 10,000 (300,000 ticks), and the
fill path is measured. Every rule still runs.
"""


def bench_configs(tokens: Sequence[int]) -> list[StrategyConfig]:
    """Two strategies on every token (DESIGN.md default parameters), both on paper and zerodha."""
    return [
        StrategyConfig("bench_momentum", "momentum", tuple(tokens), zerodha_trading_enabled=True),
        StrategyConfig("bench_mean_reversion", "mean_reversion", tuple(tokens), zerodha_trading_enabled=True),
    ]


# --- input and output -------------------------------------------------------------------


class _MemoryPartition(StatefulSourcePartition[Any, int]):
    def __init__(
        self, items: Sequence[Any], per_batch: int, resume: int | None, source: MemorySource
    ) -> None:
        self._items = items
        self._per_batch = per_batch
        self._at = resume or 0
        self._source = source

    def next_batch(self) -> list[Any]:
        if self._source.first_batch_at is None:
            self._source.first_batch_at = time.perf_counter()
        if self._at >= len(self._items):
            raise StopIteration
        batch = list(self._items[self._at : self._at + self._per_batch])
        self._at += len(batch)
        return batch

    def snapshot(self) -> int:
        return self._at


class MemorySource(FixedPartitionedSource[Any, int]):
    """Pre-built engine items, in order, ``per_batch`` a call, from one partition (read by one worker).

    The pipeline's items are :class:`RawBatch` (one a call, like the tick-file
    source); the bare flow's are :class:`RawMessage` (one per tick).
    ``first_batch_at``: ``time.perf_counter()`` when the first batch was asked
    for (after cluster start-up), or ``None`` if no worker of this process
    owns the partition.
    """

    def __init__(self, items: Sequence[Any], per_batch: int = 1) -> None:
        self._items = items
        self._per_batch = per_batch
        self.first_batch_at: float | None = None

    def list_parts(self) -> list[str]:
        """One partition, like a tick file."""
        return ["memory"]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _MemoryPartition:
        """Serve the items from index ``resume_state`` (default 0)."""
        return _MemoryPartition(self._items, self._per_batch, resume_state, self)


class _CountingPartition(StatelessSinkPartition[Any]):
    def __init__(self, cell: list[int], topics: Counter[str] | None, lock: threading.Lock) -> None:
        self._cell = cell
        self._topics = topics
        self._lock = lock

    def write_batch(self, items: list[Any]) -> None:
        messages = 0
        for item in items:
            # The pipeline emits a list of Outbound per input batch; the bare flow one item per tick.
            messages += len(item) if isinstance(item, list) else 1
        self._cell[0] += messages
        if self._topics is not None:
            counted = Counter(m.topic for item in items if isinstance(item, list) for m in item)
            with self._lock:
                self._topics.update(counted)


class CountingSink(DynamicSink[Any]):
    """Counts messages and drops them: a list counts its messages, any other item counts 1.

    :attr:`total` is the count over all workers; with ``by_topic``,
    :attr:`topics` counts the messages of each topic too (lists of
    :class:`schemas.envelope.Outbound` only).
    """

    def __init__(self, *, by_topic: bool = False) -> None:
        self._cells: list[list[int]] = []
        self.topics: Counter[str] | None = Counter() if by_topic else None
        self._lock = threading.Lock()

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _CountingPartition:
        """One counter per worker (no sharing between threads)."""
        cell = [0]
        with self._lock:
            self._cells.append(cell)
        return _CountingPartition(cell, self.topics, self._lock)

    @property
    def total(self) -> int:
        """Messages written so far, all workers."""
        return sum(cell[0] for cell in self._cells)


# --- flows and timing -------------------------------------------------------------------


def _epoch(_msg: Any) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC)


def pipeline_flow(
    source: Sequence[RawBatch] | MemorySource,
    tokens: Sequence[int],
    sink: DynamicSink[Any],
    params: PipelineParams | None = None,
    configs: Sequence[StrategyConfig] | None = None,
    *,
    recoverable: bool = False,
) -> Dataflow:
    """The whole replay pipeline (event-time clock) from memory into ``sink`` (a list of messages per batch).

    ``configs`` default to :func:`bench_configs` over ``tokens``; ``params``
    to :data:`TRADING` (both brokers, one shard, risk limits opened).
    Like a replay, its steps skip state snapshots unless ``recoverable``
    (the memory scenario, which measures what recovery stores).
    """
    flow = Dataflow("bench_pipeline")
    items = source if isinstance(source, MemorySource) else MemorySource(source)
    raw = op.input("ticks", flow, items)
    out = pipeline.build_pipeline(
        raw,
        list(configs) if configs is not None else bench_configs(tokens),
        dataclasses.replace(params or TRADING, recoverable=recoverable),
        clock=event_time_clock,
        dlq_clock=_epoch,
    )
    op.output("count", out, sink)
    return flow


def _decode(msg: RawMessage) -> TickEnvelope:
    return decode_tick(msg.value)


def _token_key(tick: TickEnvelope) -> str:
    return str(tick.data.instrument_token)


def bare_flow(messages: Sequence[RawMessage], sink: CountingSink, per_batch: int = BATCH_SIZE) -> Dataflow:
    """The per-item engine ceiling: one item per tick, decoded and keyed by instrument, nothing else."""
    flow = Dataflow("bench_bare")
    raw = op.input("ticks", flow, MemorySource(messages, per_batch))
    keyed = op.key_on("key", op.map("decode", raw, _decode), _token_key)
    op.output("count", keyed, sink)
    return flow


def run_timed(flow: Dataflow, workers: int = 1) -> float:
    """Run ``flow`` to completion; return wall seconds (perf_counter around the run only)."""
    gc.collect()
    tune_collector()  # as every replay and live flow runs
    start = time.perf_counter()
    if workers == 1:
        run_main(flow)
    else:
        cluster_main(flow, [], 0, worker_count_per_proc=workers)
    return time.perf_counter() - start
