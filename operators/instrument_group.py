"""The signal part of trading for one instrument group: strategies over the group's ticks.

Strategy state is per instrument, so every strategy's signals for the
instruments of one group are computed there, on whichever worker hosts the
group. In: one :class:`operators.timeline.GroupTicks` per step (columns of
the group's ticks in processing order). Out: one :class:`AccountPart` per
account shard for every step, even a step without ticks or signals, so the
account stage knows when it holds all the groups' parts of a step.

A part carries the shard's signals with their processing positions, and the
prices that moved in the group since the previous boundary, one dict per
boundary and one for the end of the step: the account stage marks held
instruments with them when it snapshots. Risk and the books need no other
prices: a signal carries the price of the tick that caused it.

Engine-free and pure.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from operators.account_books import trading_signal
from operators.decision import Decision
from operators.shard_state import InstrumentBook, Run, traded_book
from operators.strategy import InstrumentStrategies, StrategyConfig
from operators.timeline import GroupTicks
from schemas.events import TradingSignal


def shard_of(strategy_id: str, shards: int) -> int:
    """Stable account shard of a strategy (crc32, the same in every process)."""
    return zlib.crc32(strategy_id.encode("utf-8")) % shards


class GroupSignal(NamedTuple):
    """A strategy's decision on one tick, where it stands in its step, and the tick it came from.

    Plain values only (the account stage builds the :class:`TradingSignal`):
    what crosses workers pickles cheaply.
    """

    position: int
    strategy_id: str
    token: int
    price: float
    at: datetime
    decision: Decision
    cause: str
    correlation: str

    def signal(self) -> TradingSignal:
        """The signal the decision makes."""
        return trading_signal(self.strategy_id, self.token, self.decision, self.price, self.at)


END_OF_INPUT = -1
"""The ``step`` of the part a group sends at end of input: the prices moved since its last report."""


class AccountPart(NamedTuple):
    """What one group sends one account shard for one step.

    ``moved[k]``: prices that changed in the group before boundary ``k``
    (since the previous report); ``moved[-1]`` those after the last
    boundary, reported every step only if the group was built
    ``report_every_step`` (live flows snapshot in quiet spells), else at the
    next boundary or at end of input (``step == END_OF_INPUT``).
    ``configs``: a new strategy set instead of ticks (every group sends it).
    """

    step: int
    group: int
    signals: list[GroupSignal]
    boundaries: list[tuple[int, datetime]]
    moved: list[dict[int, float]]
    newest: datetime | None
    configs: tuple[StrategyConfig, ...] | None = None


@dataclass
class GroupState:
    """Recoverable state of an instrument group: each instrument's windows and tick identity."""

    instruments: dict[int, InstrumentBook] = field(default_factory=dict)
    moved: dict[int, float] = field(default_factory=dict)
    """Prices changed since they were last reported."""

    def copy(self) -> GroupState:
        """Return a copy that shares no mutable data with this state."""
        return GroupState({t: b.copy() for t, b in self.instruments.items()}, dict(self.moved))


class InstrumentGroup:
    """The strategies of one instrument group over a :class:`GroupState`."""

    def __init__(
        self,
        group: int,
        shards: int,
        configs: Sequence[StrategyConfig],
        state: GroupState | None = None,
        *,
        report_every_step: bool = False,
    ) -> None:
        self.group = group
        self.shards = shards
        self._every_step = report_every_step
        self.state = state if state is not None else GroupState()
        self._runs: dict[int, tuple[InstrumentBook, Run]] = {}
        self._shard_of: dict[str, int] = {}
        self.reload(configs)

    def reload(self, configs: Sequence[StrategyConfig]) -> None:
        """Adopt a new strategy set; unchanged strategies keep their windows."""
        active = [c for c in configs if c.is_active]
        self._strategies = InstrumentStrategies(active)
        self._runs.clear()
        self._shard_of = {c.id: shard_of(c.id, self.shards) for c in active}
        for token, book in list(self.state.instruments.items()):
            self._strategies.reconcile(book.strategies, token)
            if not self._strategies.strategies_for(token):
                del self.state.instruments[token]

    def on_step(self, ticks: GroupTicks) -> list[AccountPart]:
        """Run the group's ticks of one step; ``result[s]`` is account shard ``s``'s part."""
        if ticks.configs is not None:
            self.reload(ticks.configs)
            return [
                AccountPart(ticks.step, self.group, [], [], [{}], ticks.newest, ticks.configs)
                for _ in range(self.shards)
            ]
        signals: list[list[GroupSignal]] = [[] for _ in range(self.shards)]
        moved_at = self._run(ticks, signals)
        return [
            AccountPart(ticks.step, self.group, signals[s], ticks.boundaries, moved_at, ticks.newest)
            for s in range(self.shards)
        ]

    def _run(self, ticks: GroupTicks, signals: list[list[GroupSignal]]) -> list[dict[int, float]]:
        state = self.state
        instruments = state.instruments
        runs = self._runs
        moved = state.moved
        reported: list[dict[int, float]] = []
        boundaries = ticks.boundaries
        upcoming = 0
        next_boundary = boundaries[0][0] if boundaries else -1
        ids, correlations = ticks.ids, ticks.correlations
        i = -1
        columns = zip(ticks.positions, ticks.tokens, ticks.prices, ticks.times, strict=True)
        for position, token, price, at in columns:
            i += 1
            while 0 <= next_boundary <= position:
                reported.append(moved)
                moved = {}
                upcoming += 1
                next_boundary = boundaries[upcoming][0] if upcoming < len(boundaries) else -1
            traded = runs.get(token)
            if traded is None:
                traded = traded_book(self._strategies, instruments, token)
                if traded is None:
                    continue  # valid, but no strategy trades it
                runs[token] = traded
            book, run = traded
            book.see(token, at, price, ids[i] if ids is not None else None)
            moved[token] = price
            for config, on_price, strategy_state in run:
                decision = on_price(strategy_state, price)
                if decision is not None:
                    cause = book.cause_id(token)
                    correlation = (correlations[i] if correlations is not None else None) or cause
                    shard = signals[self._shard_of[config.id]]
                    shard.append(
                        GroupSignal(position, config.id, token, price, at, decision, cause, correlation)
                    )
        while upcoming < len(boundaries):
            reported.append(moved)
            moved = {}
            upcoming += 1
        if self._every_step:
            reported.append(moved)
            moved = {}
        else:
            reported.append({})
        state.moved = moved
        return reported

    def end_of_input(self) -> list[AccountPart]:
        """The prices moved since the last report, one part per account shard."""
        moved, self.state.moved = self.state.moved, {}
        return [AccountPart(END_OF_INPUT, self.group, [], [], [moved], None) for _ in range(self.shards)]

    def snapshot(self) -> GroupState:
        """A copy of the recoverable state."""
        return self.state.copy()
