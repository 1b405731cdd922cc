"""The one clock of an instrument-grouped pipeline: tick order, skew holds, snapshot boundaries.

:class:`operators.shard.TradingShard` decides three things from the whole
stream of ticks, whatever instrument they are for: which ticks are beyond the
skew (held, then replayed or dead-lettered), in what order ticks are
processed (a held tick runs when the jump in time is confirmed), and before
which tick the accounts are snapshotted (every ``snapshot_interval`` of event
time). When instruments are split into groups, these decisions must still be
taken once, over every tick: :class:`Timeline` takes them, on the single step
every batch passes, and :func:`split_into_groups` sends each instrument group
the columns of its own ticks, with the boundaries every group shares.

A batch becomes a numbered *step*; every group gets a part of every step
(possibly without ticks), so the account stage knows when it holds a step
whole. Positions count the processed ticks of one step, in processing order,
the same in every group.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from operator import attrgetter
from typing import Any, NamedTuple

from operators.shard_state import CONFIRM_AFTER, REFUTE_AFTER, HeldTick, ShardConfig, too_far_ahead
from schemas.envelope import Outbound
from schemas.topics import MARKET_TICKS

Clock = Callable[[datetime], datetime]


@dataclass
class TimelineState:
    """Recoverable state of the timeline: the newest tick, the next boundary, held ticks, the step count."""

    newest: datetime | None = None
    next_snapshot_at: datetime | None = None
    held: list[HeldTick] = field(default_factory=list)
    since_held: int = 0
    steps: int = 0

    def copy(self) -> TimelineState:
        """Return a copy that shares no mutable data with this state (held ticks are immutable)."""
        return TimelineState(self.newest, self.next_snapshot_at, list(self.held), self.since_held, self.steps)


class TickColumns(NamedTuple):
    """Decoded ticks as columns: ``tokens[i]``, ``prices[i]``, ``times[i]`` (UTC) of tick ``i``.

    ``ids`` and ``correlations`` (the producer's tick id and correlation id)
    are None when no tick had one. ``origins[i]`` locates tick ``i`` in its
    raw batch (for its dead letter).
    """

    tokens: list[int]
    prices: list[float]
    times: list[datetime]
    ids: list[str | None] | None
    correlations: list[str | None] | None
    origins: list[int]


_data = attrgetter("data")
_token = attrgetter("instrument_token")
_price = attrgetter("last_price")
_id = attrgetter("id")
_correlation = attrgetter("correlation_id")


def tick_columns(ticks: Sequence[Any], times: list[datetime], origins: list[int]) -> TickColumns:
    """Columns of decoded producer-form ticks (``schemas.codec.decode_tick_batch``'s)."""
    datas = list(map(_data, ticks))
    ids = list(map(_id, ticks))
    correlations = list(map(_correlation, ticks))
    return TickColumns(
        list(map(_token, datas)),
        list(map(_price, datas)),
        times,
        ids if any(ids) else None,
        correlations if any(correlations) else None,
        origins,
    )


def joined(parts: Sequence[TickColumns]) -> TickColumns:
    """The columns of consecutive parts of one batch, as one."""
    if len(parts) == 1:
        return parts[0]
    n = [len(p.tokens) for p in parts]
    return TickColumns(
        [t for p in parts for t in p.tokens],
        [x for p in parts for x in p.prices],
        [t for p in parts for t in p.times],
        _joined_optional([p.ids for p in parts], n),
        _joined_optional([p.correlations for p in parts], n),
        [o for p in parts for o in p.origins],
    )


def _joined_optional(columns: list[list[str | None] | None], sizes: list[int]) -> list[str | None] | None:
    if all(c is None for c in columns):
        return None
    return [
        v for c, size in zip(columns, sizes, strict=True) for v in (c if c is not None else [None] * size)
    ]


class Plan(NamedTuple):
    """One step: the ticks in processing order, and the boundaries before some of them.

    ``boundaries[k] = (position, at)``: snapshot the accounts at ``at``
    before processing tick ``position`` (``position == len(ticks)``: at
    the end of the step).
    """

    step: int
    ticks: TickColumns
    boundaries: list[tuple[int, datetime]]
    newest: datetime | None


class _Held(NamedTuple):
    """One tick's columns, as the slow path (ticks beyond the skew) holds and reorders them."""

    token: int
    price: float
    id: str | None
    correlation: str | None


class Timeline:
    """Orders ticks and places snapshot boundaries exactly as one :class:`TradingShard` would.

    In: the columns of each batch's decoded ticks. Out: a :class:`Plan` per
    batch, and (appended to ``out``) the dead letters of held ticks the
    market went on without.
    """

    def __init__(self, config: ShardConfig, clock: Clock, state: TimelineState | None = None) -> None:
        self.config = config
        self._clock = clock
        self.state = state if state is not None else TimelineState()

    def on_batch(
        self, out: list[Outbound], ticks: TickColumns, origin: Callable[[int], tuple[Any, ...]]
    ) -> Plan:
        """Plan one batch; ``origin(ticks.origins[i])`` is ``(topic, key, value, partition, offset)``."""
        state = self.state
        state.steps += 1
        boundaries: list[tuple[int, datetime]] = []
        newest = state.newest
        times = ticks.times
        if times and not state.held:
            base = newest if newest is not None else times[0]
            latest = max(times)
            if latest - base <= self.config.max_tick_skew:
                # No tick can be beyond the skew: the batch runs as it came.
                self._boundaries(times, boundaries)
                state.newest = latest if newest is None or latest > newest else newest
                return Plan(state.steps, ticks, boundaries, state.newest)
        n = len(times)
        ids = ticks.ids if ticks.ids is not None else [None] * n
        correlations = ticks.correlations if ticks.correlations is not None else [None] * n
        held = [_Held(*row) for row in zip(ticks.tokens, ticks.prices, ids, correlations, strict=True)]
        origins = [origin(i) for i in ticks.origins]
        order: list[_Held] = []
        order_times: list[datetime] = []
        self._run(out, held, times, origins, order, order_times, boundaries)
        columns = TickColumns(
            [h.token for h in order],
            [h.price for h in order],
            order_times,
            [h.id for h in order] if any(h.id for h in order) else None,
            [h.correlation for h in order] if any(h.correlation for h in order) else None,
            list(range(len(order))),
        )
        return Plan(state.steps, columns, boundaries, state.newest)

    def _boundaries(self, times: Sequence[datetime], boundaries: list[tuple[int, datetime]]) -> None:
        interval = self.config.snapshot_interval
        due = self.state.next_snapshot_at
        position = -1
        for at in times:
            position += 1
            if due is None or at >= due:
                boundaries.append((position, at))
                due = at + interval
        self.state.next_snapshot_at = due

    def _run(
        self,
        out: list[Outbound],
        ticks: Sequence[Any],
        times: Sequence[datetime],
        origins: Sequence[Any],
        order: list[Any],
        order_times: list[datetime],
        boundaries: list[tuple[int, datetime]],
    ) -> None:
        # The control flow of TradingShard.on_batch, without the instruments.
        state = self.state
        skew = self.config.max_tick_skew
        interval = self.config.snapshot_interval
        newest = state.newest
        due = state.next_snapshot_at
        position = -1
        for tick, at in zip(ticks, times, strict=True):
            position += 1
            if newest is None or at > newest:
                if newest is not None and at - newest > skew:
                    state.newest, state.next_snapshot_at = newest, due
                    self._hold(out, tick, at, origins, position, order, order_times, boundaries)
                    newest, due = state.newest, state.next_snapshot_at
                    continue
                newest = at
            if state.held:
                state.since_held += 1
                if state.since_held > REFUTE_AFTER:
                    self._refute(out, newest)
            if due is None or at >= due:
                boundaries.append((len(order), at))
                due = at + interval
            order.append(tick)
            order_times.append(at)
        state.newest, state.next_snapshot_at = newest, due

    def _hold(
        self,
        out: list[Outbound],
        tick: Any,
        at: datetime,
        origins: Sequence[Any],
        i: int,
        order: list[Any],
        order_times: list[datetime],
        boundaries: list[tuple[int, datetime]],
    ) -> None:
        origin = tuple(origins[i]) if i < len(origins) else (MARKET_TICKS, None, b"", None, None)
        state = self.state
        state.held.append(HeldTick(tick, at, origin))
        if len(state.held) == 1:
            state.since_held = 0
        instruments = {h.tick.token for h in state.held}
        if len(state.held) >= CONFIRM_AFTER or len(instruments) >= 2:
            held, state.held = state.held, []
            state.newest = held[0].at  # a real gap in the market: time moves on
            self._run(
                out,
                [h.tick for h in held],
                [h.at for h in held],
                [h.origin for h in held],
                order,
                order_times,
                boundaries,
            )

    def _refute(self, out: list[Outbound], newest: datetime | None) -> None:
        held, self.state.held = self.state.held, []
        if newest is not None:
            out.extend(too_far_ahead(h, newest, self.config, self._clock) for h in held)

    def reload_step(self) -> int:
        """Number a step that only changes the strategy set."""
        self.state.steps += 1
        return self.state.steps

    def flush(self) -> list[Outbound]:
        """At end of input: the dead letters of ticks still held."""
        out: list[Outbound] = []
        if self.state.held:
            self._refute(out, self.state.newest)
        return out

    def snapshot(self) -> TimelineState:
        """A copy of the recoverable state."""
        return self.state.copy()


# --- instrument groups ----------------------------------------------------------


def group_of(token: int, groups: int) -> int:
    """Stable instrument group of a token (crc32 of its decimal digits, the same in every process)."""
    return zlib.crc32(str(token).encode("ascii")) % groups


class _Groups(dict[int, int]):
    """token -> group, computed once per token."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def __missing__(self, token: int) -> int:
        group = self[token] = group_of(token, self.groups)
        return group


class GroupTicks(NamedTuple):
    """The part of one step an instrument group gets: columns of its ticks, and every boundary.

    ``positions[i]`` is the processing position of tick ``i`` in its step;
    ``ids`` and ``correlations`` are None when no tick of the step had one.
    ``configs`` instead of ticks: a new strategy set from this step on.
    """

    step: int
    positions: list[int]
    tokens: list[int]
    prices: list[float]
    times: list[datetime]
    ids: list[str | None] | None
    correlations: list[str | None] | None
    boundaries: list[tuple[int, datetime]]
    newest: datetime | None
    configs: tuple[Any, ...] | None = None


class GroupSplitter:
    """Splits a :class:`Plan` into one :class:`GroupTicks` per instrument group (columns, no objects)."""

    def __init__(self, groups: int) -> None:
        self.groups = groups
        self._of = _Groups(groups)

    def split(self, plan: Plan) -> list[GroupTicks]:
        """``result[g]``: group ``g``'s ticks of the step, in processing order."""
        ticks = plan.ticks
        tokens, prices, times, ids, correlations = (
            ticks.tokens,
            ticks.prices,
            ticks.times,
            ticks.ids,
            ticks.correlations,
        )
        members: list[list[int]] = [[] for _ in range(self.groups)]
        adds = [m.append for m in members]
        position = -1
        for group in map(self._of.__getitem__, tokens):
            position += 1
            adds[group](position)
        return [
            GroupTicks(
                plan.step,
                mine,
                list(map(tokens.__getitem__, mine)),
                list(map(prices.__getitem__, mine)),
                list(map(times.__getitem__, mine)),
                list(map(ids.__getitem__, mine)) if ids is not None else None,
                list(map(correlations.__getitem__, mine)) if correlations is not None else None,
                plan.boundaries,
                plan.newest,
            )
            for mine in members
        ]

    def reload(self, step: int, configs: tuple[Any, ...], newest: datetime | None) -> list[GroupTicks]:
        """A step that only changes the strategy set, for every group."""
        return [GroupTicks(step, [], [], [], [], None, None, [], newest, configs) for _ in range(self.groups)]
