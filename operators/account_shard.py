"""The account part of an instrument-grouped pipeline: every group's signals, merged in one order.

An account shard holds the accounts (strategy x broker) of some strategies.
Its signals come from every instrument group, each group's part of a step on
its own; the shard waits until it holds all ``groups`` parts of the next
step, then runs the step: signals in processing position order (one tick's
signals in strategy order, as the group made them), each snapshot boundary
before the tick at its position. That is exactly the order in which
:class:`operators.shard.TradingShard` trades, whatever the number of groups,
workers or processes, so the messages are the same.

Steps complete in order: each group sends its parts in step order, so when
step ``n`` is whole, every earlier step is too. A step that is not whole
waits in the state (plain data, recoverable).

Engine-free: the clock, the executor and the kill switch are injected.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from operator import attrgetter

from operators.account_books import AccountBooks, Clock, Execute
from operators.errors import ConfigError
from operators.instrument_group import END_OF_INPUT, AccountPart, shard_of
from operators.portfolio import Portfolio
from operators.risk import RiskFilter
from operators.shard_state import AccountState, ShardConfig
from operators.strategy import StrategyConfig
from schemas.envelope import Outbound

_position = attrgetter("position")


@dataclass
class AccountShardState:
    """Recoverable state of an account shard.

    ``latest``: the latest price of each instrument seen (marks for
    snapshots). ``waiting``: parts of steps not yet whole, by step.
    ``done``: the last step run. ``ends``: the groups' last prices, sent at
    end of input, applied once every step ran.
    """

    accounts: dict[str, AccountState] = field(default_factory=dict)
    latest: dict[int, float] = field(default_factory=dict)
    waiting: dict[int, list[AccountPart]] = field(default_factory=dict)
    done: int = 0
    newest: datetime | None = None
    ends: list[dict[int, float]] = field(default_factory=list)

    def copy(self) -> AccountShardState:
        """Return a copy that shares no mutable data with this state (parts are not changed once made)."""
        return AccountShardState(
            {name: account.copy() for name, account in self.accounts.items()},
            dict(self.latest),
            {step: list(parts) for step, parts in self.waiting.items()},
            self.done,
            self.newest,
            list(self.ends),
        )


class AccountShard:
    """Risk, execution and books of one account shard, fed the parts of every instrument group."""

    def __init__(
        self,
        shard: int,
        shards: int,
        groups: int,
        configs: Sequence[StrategyConfig],
        config: ShardConfig,
        risk: RiskFilter,
        portfolio: Portfolio,
        execute: Execute,
        clock: Clock,
        state: AccountShardState | None = None,
        *,
        halts: Callable[[str, str], str | None] | None = None,
    ) -> None:
        if groups < 1 or not 0 <= shard < shards:
            msg = f"account shard {shard} of {shards} with {groups} instrument groups cannot run"
            raise ConfigError(msg)
        self.shard = shard
        self.shards = shards
        self.groups = groups
        self.state = state if state is not None else AccountShardState()
        self._books = AccountBooks(config, risk, portfolio, execute, clock, self.state.accounts, halts=halts)
        self.reload(configs)

    def reload(self, configs: Sequence[StrategyConfig]) -> None:
        """Trade for this shard's strategies of ``configs`` from now on."""
        self._books.reload([c for c in configs if c.is_active and shard_of(c.id, self.shards) == self.shard])

    @property
    def account_names(self) -> list[str]:
        """Every account of the shard, ``broker:strategy_id``."""
        return self._books.names

    def on_part(self, part: AccountPart) -> list[Outbound]:
        """Take one group's part of a step; return the messages of every step it made whole."""
        state = self.state
        if part.step == END_OF_INPUT:
            state.ends.extend(part.moved)
            return []
        state.waiting.setdefault(part.step, []).append(part)
        out: list[Outbound] = []
        while len(state.waiting.get(state.done + 1, ())) == self.groups:
            state.done += 1
            self._run(out, state.waiting.pop(state.done))
        return out

    def _run(self, out: list[Outbound], parts: list[AccountPart]) -> None:
        first = parts[0]
        state = self.state
        if first.configs is not None:
            self.reload(first.configs)
            state.newest = first.newest
            return
        latest = state.latest
        books = self._books
        boundaries = first.boundaries
        signals = sorted((s for part in parts for s in part.signals), key=_position)
        k = 0
        for signal in signals:
            while k < len(boundaries) and boundaries[k][0] <= signal.position:
                self._boundary(out, parts, k)
                k += 1
            books.on_signal(out, signal.signal(), signal.cause, signal.correlation)
        while k < len(boundaries):
            self._boundary(out, parts, k)
            k += 1
        for part in parts:
            latest.update(part.moved[-1])
        state.newest = first.newest

    def _boundary(self, out: list[Outbound], parts: list[AccountPart], k: int) -> None:
        latest = self.state.latest
        for part in parts:
            latest.update(part.moved[k])
        self._books.snapshots(out, parts[0].boundaries[k][1], latest.get)

    def flush(self) -> list[Outbound]:
        """The snapshots still owed at the newest tick (end of input, quiet spell)."""
        state = self.state
        for moved in state.ends:
            state.latest.update(moved)
        state.ends.clear()
        newest = state.newest
        out: list[Outbound] = []
        if newest is not None:
            self._books.flush(out, newest, self.state.latest.get)
        return out

    @property
    def has_pending(self) -> bool:
        """Whether some account changed, or holds positions marked, since its last snapshot."""
        return self._books.has_pending(self.state.newest)

    def snapshot(self) -> AccountShardState:
        """A copy of the recoverable state."""
        return self.state.copy()
