"""The trading stages split by instrument group, for flows that scale over workers and processes.

``PipelineParams(groups=G)`` with ``G > 1`` wires the trading part of
:func:`dataflows.pipeline.build_pipeline` as three stateful steps instead of
one :class:`operators.shard.TradingShard` per strategy shard:

1. ``timeline`` (one key): decodes each raw batch once, dead-letters what
   fails, orders the ticks and places snapshot boundaries
   (:class:`operators.timeline.Timeline`), and splits the batch into one
   part per instrument group: columns of plain values, so what crosses
   workers pickles cheaply (``G`` items per batch, never one per tick).
2. ``groups`` (group ``g``): the strategies over the group's instruments
   (:class:`operators.instrument_group.InstrumentGroup`); one part per
   account shard for every step.
3. ``accounts`` (shard ``s``, strategies by ``shard_of(strategy_id, shards)``):
   waits for all ``G`` parts of a step and runs risk, execution and books in
   the order one shard would (:class:`operators.account_shard.AccountShard`).

Placement (:mod:`dataflows.placement`): the timeline on worker 0, group
``g`` on worker ``(g + 1) % W`` and account shard ``s`` on ``(s + 1) % W``,
so the worker that decodes gets the fewest groups.

The messages are the same for any ``G``, number of shards, workers or
processes, and the same as the one-group path's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import bytewax.operators as op
from bytewax.dataflow import Stream
from bytewax.operators import StatefulLogic

from dataflows.ingest import dead_tick
from dataflows.placement import worker_key
from operators.account_shard import AccountShard, AccountShardState
from operators.instrument_group import AccountPart, GroupState, InstrumentGroup
from operators.shard_state import ShardConfig
from operators.strategy import StrategyConfig
from operators.timeline import GroupSplitter, GroupTicks, Timeline, TimelineState
from schemas.codec import RawBatch, TimeCache, decode_tick_batch
from schemas.envelope import Outbound

if TYPE_CHECKING:
    from dataflows.pipeline import PipelineParams


class _Origins:
    """``origins[i]``: (topic, key, value, partition, offset) of good tick ``i`` of a batch, on demand."""

    def __init__(self, raw: RawBatch, positions: list[int]) -> None:
        self._raw = raw
        self._positions = positions

    def __len__(self) -> int:
        return len(self._positions)

    def __getitem__(self, i: int) -> tuple[Any, ...]:
        message = self._raw.message(self._positions[i])
        return (message.topic, message.key, message.value, message.partition, message.offset)


class _TimelineLogic(StatefulLogic[Any, list[Any], TimelineState]):
    """Decode, order and split: a raw batch (or a strategy set) in, the groups' parts and dead letters out."""

    def __init__(
        self,
        config: ShardConfig,
        clock: Callable[[datetime], datetime],
        keys: list[str],
        dead: Callable[[RawBatch, int, Any], Outbound],
        times: TimeCache,
        resume: TimelineState | None,
    ) -> None:
        self._timeline = Timeline(config, clock, resume)
        self._splitter = GroupSplitter(len(keys))
        self._keys = keys
        self._dead = dead
        self._times = times

    def on_item(self, value: Any) -> tuple[Iterable[list[Any]], bool]:
        if not isinstance(value, RawBatch):
            step = self._timeline.reload_step()
            parts = self._splitter.reload(step, tuple(value), self._timeline.state.newest)
            return [self._keyed(parts)], StatefulLogic.RETAIN
        decoded = decode_tick_batch(value.values, self._times)
        out: list[Any] = []
        letters = [self._dead(value, i, err) for i, err in decoded.failed]
        if decoded.ticks:
            plan = self._timeline.on_batch(
                letters, decoded.ticks, decoded.times, _Origins(value, decoded.positions)
            )
            out.extend(self._keyed(self._splitter.split(plan)))
        if letters:
            out.append(letters)
        return ([out] if out else ()), StatefulLogic.RETAIN

    def _keyed(self, parts: list[GroupTicks]) -> list[tuple[str, tuple[int, GroupTicks]]]:
        return [(self._keys[g], (g, part)) for g, part in enumerate(parts)]

    def on_eof(self) -> tuple[Iterable[list[Any]], bool]:
        letters = self._timeline.flush()
        return ([[letters]] if letters else ()), StatefulLogic.RETAIN

    def snapshot(self) -> TimelineState:
        return self._timeline.snapshot()


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


class _AccountLogic(StatefulLogic[AccountPart, list[Outbound], tuple[int, AccountShardState]]):
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

    def on_eof(self) -> tuple[Iterable[list[Outbound]], bool]:
        out = self._shard.flush() if self._shard is not None else []
        return ((out,) if out else ()), StatefulLogic.RETAIN

    def notify_at(self) -> datetime | None:
        idle = self._idle_after
        if idle is None or self._shard is None or not self._shard.has_pending:
            self._flush_at = None
            return None
        if self._flush_at is None:
            self._flush_at = datetime.now(UTC) + idle
        return self._flush_at

    def on_notify(self) -> tuple[Iterable[list[Outbound]], bool]:
        # A quiet market: bring Redis to the latest books without waiting for the next tick.
        self._flush_at = None
        out = self._shard.flush() if self._shard is not None else []
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

    times = TimeCache(params.naive_tz)
    timeline_key = worker_key("timeline", 0)
    group_keys = [worker_key("group", g + 1) for g in range(groups)]
    shard_keys = [worker_key("accounts", s + 1) for s in range(shards)]
    work: Stream[tuple[str, Any]] = op.key_on("to_timeline", raw_ticks, lambda _batch: timeline_key)
    if config_updates is not None:
        reloads = op.key_on("reloads_to_timeline", config_updates, lambda _new: timeline_key)
        work = op.merge("timeline_work", work, reloads)
    planned = op.key_rm(
        "timeline_unkey",
        op.stateful(
            "timeline",
            work,
            lambda resume: _TimelineLogic(shard_config, clock, group_keys, dead, times, resume),
        ),
    )
    items = op.flat_map("timeline_items", planned, lambda batch: batch)
    split = op.branch("timeline_letters", items, lambda item: isinstance(item, list))

    def build_group(index: int, state: GroupState | None) -> InstrumentGroup:
        return InstrumentGroup(
            index, shards, configs, state, report_every_step=params.idle_mark_after is not None
        )

    grouped = op.stateful("groups", split.falses, lambda resume: _GroupLogic(build_group, shard_keys, resume))
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
    accounts = op.stateful("accounts", to_accounts, lambda r: _AccountLogic(build_accounts, r, idle))
    published = op.key_rm("accounts_unkey", accounts)
    return op.merge("grouped_published", published, split.trues)
