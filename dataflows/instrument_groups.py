"""The trading stages split by instrument group, for flows that scale over workers and processes.

``PipelineParams(groups=G)`` with ``G > 1`` wires the trading part of
:func:`dataflows.pipeline.build_pipeline` as four stateful steps instead of
one :class:`operators.shard.TradingShard` per strategy shard:

1. ``decode`` (``G`` decoders): each raw batch is cut into ``G``
   consecutive chunks, decoded where they land; bad lines become dead
   letters there, good ticks go on as columns of plain values.
2. ``timeline`` (one key): pairs each raw batch with its decoded chunks,
   orders the ticks and places snapshot boundaries
   (:class:`operators.timeline.Timeline`), and splits the step into one
   part per instrument group (``G`` items per batch, never one per tick).
3. ``groups`` (group ``g``): the strategies over the group's instruments
   (:class:`operators.instrument_group.InstrumentGroup`); one part per
   account shard for every step.
4. ``accounts`` (shard ``s``, strategies by ``shard_of(strategy_id, shards)``):
   waits for all ``G`` parts of a step and runs risk, execution and books in
   the order one shard would (:class:`operators.account_shard.AccountShard`).

Placement (:mod:`dataflows.placement`): the timeline and decoder 0 on
worker 0 (where a one-partition source runs), decoder ``k`` on worker
``k % W``, group ``g`` on worker ``(g + 1) % W`` and account shard ``s`` on
``(s + 1) % W``: with 3 groups on 2 workers, worker 0 decodes two chunks and
runs one group, worker 1 decodes one and runs two.

The messages are the same for any ``G``, number of shards, workers or
processes, and the same as the one-group path's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

import bytewax.operators as op
from bytewax.dataflow import Stream
from bytewax.operators import StatefulLogic

from dataflows.idle_flush import FlushesWhenIdle
from dataflows.ingest import dead_tick
from dataflows.placement import worker_key
from dataflows.unrecovered import logic_builder
from operators.account_shard import AccountShard, AccountShardState
from operators.instrument_group import AccountPart, GroupState, InstrumentGroup
from operators.shard_state import ShardConfig
from operators.strategy import StrategyConfig
from operators.timeline import (
    GroupSplitter,
    GroupTicks,
    TickColumns,
    Timeline,
    TimelineState,
    joined,
    tick_columns,
)
from schemas.codec import RawBatch, TimeCache, decode_tick_batch
from schemas.envelope import Outbound

if TYPE_CHECKING:
    from dataflows.params import PipelineParams


class Chunk(NamedTuple):
    """Lines ``start`` onwards of one raw batch, for decoder ``index`` of ``count``."""

    batch: tuple[Any, ...]
    index: int
    count: int
    start: int
    raw: RawBatch


class Decoded(NamedTuple):
    """A chunk's good ticks as columns (origins: line numbers in the whole batch)."""

    batch: tuple[Any, ...]
    index: int
    count: int
    ticks: TickColumns


def batch_id(batch: RawBatch) -> tuple[Any, ...]:
    """What names a raw batch among all others: where its first message came from."""
    partition = batch.partitions[0] if batch.partitions is not None else batch.partition
    return (batch.topic, partition, batch.offsets[0])


def chunks(batch: RawBatch, count: int) -> list[Chunk]:
    """``batch`` cut into ``count`` consecutive chunks of about equal size (some maybe empty)."""
    n = len(batch.values)
    ident = batch_id(batch)
    out = []
    for k in range(count):
        a, b = n * k // count, n * (k + 1) // count
        out.append(
            Chunk(
                ident,
                k,
                count,
                a,
                RawBatch(
                    batch.topic,
                    batch.values[a:b],
                    batch.offsets[a:b],
                    batch.partition,
                    batch.keys[a:b] if batch.keys is not None else None,
                    batch.partitions[a:b] if batch.partitions is not None else None,
                    batch.timestamps[a:b] if batch.timestamps is not None else None,
                ),
            )
        )
    return out


class _DecodeLogic(StatefulLogic[Chunk, Any, None]):
    """Decodes one chunk: its columns to the timeline, its dead letters straight out. Keeps no state."""

    def __init__(self, dead: Callable[[RawBatch, int, Any], Outbound], times: TimeCache) -> None:
        self._dead = dead
        self._times = times

    def on_item(self, value: Chunk) -> tuple[Iterable[Any], bool]:
        raw = value.raw
        decoded = decode_tick_batch(raw.values, self._times)
        start = value.start
        origins = [start + i for i in decoded.positions]
        ticks = tick_columns(decoded.ticks, decoded.times, origins)
        out: list[Any] = [Decoded(value.batch, value.index, value.count, ticks)]
        if decoded.failed:
            out.append([self._dead(raw, i, err) for i, err in decoded.failed])
        return out, StatefulLogic.RETAIN

    def snapshot(self) -> None:
        return None


@dataclass
class _Pending:
    """A raw batch and its decoded chunks, until all have arrived."""

    raw: RawBatch | None = None
    chunks: dict[int, TickColumns] = field(default_factory=dict)
    count: int = 0


class _TimelineLogic(StatefulLogic[Any, list[Any], tuple[TimelineState, dict[Any, _Pending]]]):
    """Orders and splits: each raw batch with its decoded chunks (or a strategy set) in, groups' parts out.

    A batch runs once its raw lines (for dead letters of held ticks) and
    every decoder's chunk are in. Batches complete in the order one source
    sent them: each sender delivers in order.
    """

    def __init__(
        self,
        config: ShardConfig,
        clock: Callable[[datetime], datetime],
        keys: list[str],
        resume: tuple[TimelineState, dict[Any, _Pending]] | None,
    ) -> None:
        self._timeline = Timeline(config, clock, resume[0] if resume is not None else None)
        self._pending: dict[Any, _Pending] = dict(resume[1]) if resume is not None else {}
        self._splitter = GroupSplitter(len(keys))
        self._keys = keys

    def on_item(self, value: Any) -> tuple[Iterable[list[Any]], bool]:
        if isinstance(value, RawBatch):
            pending = self._pending.setdefault(batch_id(value), _Pending())
            pending.raw = value
            ident = batch_id(value)
        elif isinstance(value, Decoded):
            pending = self._pending.setdefault(value.batch, _Pending())
            pending.chunks[value.index] = value.ticks
            pending.count = value.count
            ident = value.batch
        else:
            step = self._timeline.reload_step()
            parts = self._splitter.reload(step, tuple(value), self._timeline.state.newest)
            return [self._keyed(parts)], StatefulLogic.RETAIN
        if pending.raw is None or not pending.count or len(pending.chunks) < pending.count:
            return (), StatefulLogic.RETAIN
        del self._pending[ident]
        ticks = joined([pending.chunks[k] for k in range(pending.count)])
        if not ticks.tokens:
            return (), StatefulLogic.RETAIN
        raw = pending.raw
        letters: list[Outbound] = []
        plan = self._timeline.on_batch(letters, ticks, lambda i: _origin(raw, i))
        out: list[Any] = self._keyed(self._splitter.split(plan))
        if letters:
            out.append(letters)
        return [out], StatefulLogic.RETAIN

    def _keyed(self, parts: list[GroupTicks]) -> list[Any]:
        return [(self._keys[g], (g, part)) for g, part in enumerate(parts)]

    def on_eof(self) -> tuple[Iterable[list[Any]], bool]:
        letters = self._timeline.flush()
        return ([[letters]] if letters else ()), StatefulLogic.RETAIN

    def snapshot(self) -> tuple[TimelineState, dict[Any, _Pending]]:
        pending = {k: _Pending(p.raw, dict(p.chunks), p.count) for k, p in self._pending.items()}
        return (self._timeline.snapshot(), pending)


def _origin(raw: RawBatch, i: int) -> tuple[Any, ...]:
    message = raw.message(i)
    return (message.topic, message.key, message.value, message.partition, message.offset)


class _GroupLogic(StatefulLogic[Any, tuple[str, Any], tuple[int, GroupState]]):
    """Bytewax glue around one :class:`InstrumentGroup`: a step's ticks in, a part per account shard out."""

    def __init__(
        self, build: Callable[[int, GroupState | None], InstrumentGroup], keys: list[str], resume: Any
    ) -> None:
        self._build = build
        self._keys = keys
        self._group: InstrumentGroup | None = build(*resume) if resume is not None else None

    def on_item(self, value: tuple[int, GroupTicks]) -> tuple[Iterable[tuple[str, Any]], bool]:
        index, ticks = value
        if self._group is None:
            self._group = self._build(index, None)
        return self._keyed(self._group.on_step(ticks)), StatefulLogic.RETAIN

    def _keyed(self, parts: list[AccountPart]) -> list[tuple[str, Any]]:
        return [(self._keys[s], (s, part)) for s, part in enumerate(parts)]

    def on_eof(self) -> tuple[Iterable[tuple[str, Any]], bool]:
        parts = self._group.end_of_input() if self._group is not None else []
        return self._keyed(parts), StatefulLogic.RETAIN

    def snapshot(self) -> tuple[int, GroupState]:
        assert self._group is not None  # noqa: S101 - Bytewax snapshots only logics that saw an item
        return (self._group.group, self._group.snapshot())


class _AccountLogic(
    FlushesWhenIdle, StatefulLogic[AccountPart, list[Outbound], tuple[int, AccountShardState]]
):
    """Bytewax glue around one :class:`AccountShard`: groups' parts in, messages per whole step out."""

    def __init__(
        self,
        build: Callable[[int, AccountShardState | None], AccountShard],
        resume: Any,
        idle_after: timedelta | None,
    ) -> None:
        self._build = build
        self._shard: AccountShard | None = build(*resume) if resume is not None else None
        self._idle_after = idle_after
        self._flush_at: datetime | None = None

    def on_item(self, value: tuple[int, AccountPart]) -> tuple[Iterable[list[Outbound]], bool]:
        index, part = value
        if self._shard is None:
            self._shard = self._build(index, None)
        out = self._shard.on_part(part)
        return ((out,) if out else ()), StatefulLogic.RETAIN

    def snapshot(self) -> tuple[int, AccountShardState]:
        assert self._shard is not None  # noqa: S101 - Bytewax snapshots only logics that saw an item
        return (self._shard.shard, self._shard.snapshot())


def grouped_trading(
    raw_ticks: Stream[RawBatch],
    configs: Sequence[StrategyConfig],
    params: PipelineParams,
    *,
    clock: Callable[[datetime], datetime],
    dlq_clock: Callable[[Any], datetime],
    config_updates: Stream[Sequence[StrategyConfig]] | None = None,
) -> Stream[list[Outbound]]:
    """Raw tick batches in; every published message out, one list per step an account shard runs."""
    groups, shards = params.groups, max(1, params.shards)
    shard_config = params.shard_config()
    risk, portfolio, execute = params.trading_collaborators(clock)

    def dead(batch: RawBatch, i: int, err: Any) -> Outbound:
        return dead_tick(batch.message(i), err, params.service, dlq_clock)

    decoders = groups + 1  # with the suggested 2W - 1 groups, every worker decodes two chunks
    timeline_key = worker_key("timeline", 0)
    decoder_keys = [worker_key("decode", k) for k in range(decoders)]
    group_keys = [worker_key("group", g + 1) for g in range(groups)]
    shard_keys = [worker_key("accounts", s + 1) for s in range(shards)]

    def to_decoders(batch: RawBatch) -> list[tuple[str, Any]]:
        if not batch.values:
            return []
        out: list[tuple[str, Any]] = [(decoder_keys[c.index], c) for c in chunks(batch, decoders)]
        out.append((timeline_key, batch))
        return out

    cut = op.flat_map("to_decoders", raw_ticks, to_decoders)
    to_decode = op.branch("decode_or_timeline", cut, lambda kv: kv[0] != timeline_key)
    decoded = op.key_rm(
        "decode_unkey",
        op.stateful("decode", to_decode.trues, lambda _r: _DecodeLogic(dead, TimeCache(params.naive_tz))),
    )
    decode_split = op.branch("decoded_letters", decoded, lambda item: isinstance(item, list))
    to_timeline = op.key_on("chunks_to_timeline", decode_split.falses, lambda _d: timeline_key)
    work: Stream[tuple[str, Any]] = op.merge("timeline_work", to_decode.falses, to_timeline)
    if config_updates is not None:
        reloads = op.key_on("reloads_to_timeline", config_updates, lambda _new: timeline_key)
        work = op.merge("timeline_reloads", work, reloads)
    planned = op.key_rm(
        "timeline_unkey",
        op.stateful(
            "timeline",
            work,
            logic_builder(
                lambda resume: _TimelineLogic(shard_config, clock, group_keys, resume),
                recoverable=params.recoverable,
            ),
        ),
    )
    items = op.flat_map("timeline_items", planned, lambda batch: batch)
    split = op.branch("timeline_letters", items, lambda item: isinstance(item, list))

    def build_group(index: int, state: GroupState | None) -> InstrumentGroup:
        return InstrumentGroup(
            index, shards, configs, state, report_every_step=params.idle_mark_after is not None
        )

    grouped = op.stateful(
        "groups",
        split.falses,
        logic_builder(
            lambda resume: _GroupLogic(build_group, shard_keys, resume), recoverable=params.recoverable
        ),
    )
    to_accounts = op.key_rm("groups_unkey", grouped)

    def build_accounts(index: int, state: AccountShardState | None) -> AccountShard:
        return AccountShard(
            index,
            shards,
            groups,
            configs,
            shard_config,
            risk,
            portfolio,
            execute,
            clock,
            state,
            halts=params.halts,
        )

    idle = params.idle_mark_after
    accounts = op.stateful(
        "accounts",
        to_accounts,
        logic_builder(lambda r: _AccountLogic(build_accounts, r, idle), recoverable=params.recoverable),
    )
    published = op.key_rm("accounts_unkey", accounts)
    return op.merge("grouped_published", published, split.trues, decode_split.trues)
