"""The recoverable state of trading shards, and the facts they share.

:class:`ShardState` is what :class:`operators.shard.TradingShard` snapshots;
:class:`AccountState` and :class:`InstrumentBook` are also the parts the
instrument-group path keeps (:mod:`operators.instrument_group`,
:mod:`operators.account_shard`, :mod:`operators.timeline`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final, NamedTuple

from operators.errors import ConfigError
from operators.portfolio import PortfolioState
from operators.risk import RiskState
from operators.strategy import InstrumentState, InstrumentStrategies, StrategyConfig
from schemas.codec import dead_letter
from schemas.envelope import (
    STAGE_TOPIC,
    FailedEnvelope,
    FilledEnvelope,
    Outbound,
    PnlEnvelope,
    RejectedEnvelope,
    TickOccurrences,
    ValidatedEnvelope,
    tick_id_of,
)
from schemas.topics import ORDERS_SUBMITTED, SIGNALS_RAW, broker_topic, dlq_topic

_PUBLISHED: Final = (ValidatedEnvelope, RejectedEnvelope, FilledEnvelope, FailedEnvelope, PnlEnvelope)
"""The event types an account publishes to its own stage topics."""


@dataclass(frozen=True)
class ShardConfig:
    """What every shard of a flow shares.

    ``snapshot_interval``: event time between two P&L snapshots of an account.
    ``max_tick_skew``: a tick dated more than this after the newest tick seen
    is dead-lettered (a typo in a year must not freeze the books).
    ``service``: the ``source`` prefix stamped on events.
    """

    brokers: tuple[str, ...] = ("paper", "zerodha")
    snapshot_interval: timedelta = timedelta(seconds=10)
    max_tick_skew: timedelta = timedelta(days=1)
    service: str = "alpha-panda"

    def __post_init__(self) -> None:
        """Reject intervals the shard cannot run with."""
        if self.snapshot_interval < timedelta(0) or self.max_tick_skew <= timedelta(0):
            msg = "snapshot_interval must be >= 0 and max_tick_skew > 0"
            raise ConfigError(msg)


@dataclass
class AccountState:
    """Recoverable state of one account: its risk view, its books, its snapshot clock.

    ``changed``: a fill, or a move of a held instrument, since the last snapshot.
    """

    risk: RiskState
    books: PortfolioState
    last_snapshot_at: datetime | None = None
    changed: bool = False
    snapshots: int = 0
    cause: str = ""
    correlation: str = ""
    """The last fill applied (``cause``, its correlation id): what a snapshot is caused by."""

    def copy(self) -> AccountState:
        """Return a copy that shares no mutable data with this state."""
        return AccountState(
            self.risk.copy(),
            self.books.copy(),
            self.last_snapshot_at,
            self.changed,
            self.snapshots,
            self.cause,
            self.correlation,
        )


@dataclass
class InstrumentBook:
    """Recoverable state of one instrument in a shard: windows, tick identity, latest tick."""

    strategies: InstrumentState
    occurrences: TickOccurrences = field(default_factory=TickOccurrences)
    price: float = 0.0
    tick_id: str = ""
    tick_at: datetime | None = None

    def copy(self) -> InstrumentBook:
        """Return a copy that shares no mutable data with this state."""
        return InstrumentBook(
            self.strategies.copy(), self.occurrences.copy(), self.price, self.tick_id, self.tick_at
        )

    def see(self, token: int, at: datetime, price: float, tick_id: str | None) -> None:
        """Take a tick of the instrument as its latest: its time, price and occurrence-counted id.

        The id is the producer's, or made now if earlier ticks had the same
        time and price, or else left to :meth:`cause_id` (most ticks never
        need one). A new second of the instrument, nearly every tick, is
        counted here without a call to :meth:`TickOccurrences.next`.
        """
        occurrences = self.occurrences
        last = occurrences.at
        if last is None or at > last:
            occurrences.at, occurrences.first_price, occurrences.same = at, price, None
            self.tick_id = tick_id or ""
        else:
            occurrence = occurrences.next(at, price)
            self.tick_id = tick_id or (tick_id_of(token, at, price, occurrence) if occurrence else "")
        self.price = price
        self.tick_at = at

    def cause_id(self, token: int) -> str:
        """The id of the latest tick, made on first use: most ticks cause nothing and never need one."""
        if not self.tick_id and self.tick_at is not None:
            self.tick_id = tick_id_of(token, self.tick_at, self.price, 0)
        return self.tick_id


Run = list[tuple[StrategyConfig, Any, Any]]
"""The strategies trading one instrument: each one's config, ``on_price`` and state for the instrument."""


def traded_book(
    strategies: InstrumentStrategies, instruments: dict[int, InstrumentBook], token: int
) -> tuple[InstrumentBook, Run] | None:
    """The book of ``token`` (made on its first tick) and its strategies' steps; None if none trades it.

    The per-tick loops keep the result until the next reload or restore.
    """
    configs = strategies.strategies_for(token)
    if not configs:
        return None
    book = instruments.get(token)
    if book is None:
        book = instruments[token] = InstrumentBook(strategies.new_state())
    run = []
    for config in configs:
        logic, strategy_state = strategies.runner_state(book.strategies, config.id)
        run.append((config, logic.on_price, strategy_state))
    return book, run


@dataclass
class ShardState:
    """Recoverable state of a shard."""

    instruments: dict[int, InstrumentBook] = field(default_factory=dict)
    accounts: dict[str, AccountState] = field(default_factory=dict)
    newest: datetime | None = None
    next_snapshot_at: datetime | None = None
    held: list[HeldTick] = field(default_factory=list)
    """Ticks beyond the skew, waiting for others to confirm the jump in time."""
    since_held: int = 0
    """Ticks of the old time processed since the first held one."""

    def copy(self) -> ShardState:
        """Return a deep copy (the snapshot of this state)."""
        return ShardState(
            {token: book.copy() for token, book in self.instruments.items()},
            {name: account.copy() for name, account in self.accounts.items()},
            self.newest,
            self.next_snapshot_at,
            list(self.held),
            self.since_held,
        )


class HeldTick(NamedTuple):
    """A tick dated beyond the skew, with where it came from (for its dead letter)."""

    tick: Any
    at: datetime
    origin: tuple[Any, ...]


CONFIRM_AFTER: Final = 3
"""Held ticks (or 2 of distinct instruments) that confirm a jump in time: a gap in the market."""

REFUTE_AFTER: Final = 100
"""Ticks of the old time after which held ones are outliers, dead-lettered."""


@dataclass(frozen=True)
class Account:
    """The fixed facts of one account: who, where it publishes, how it is keyed."""

    name: str
    broker: str
    strategy_id: str
    key: str
    topics: dict[type, str]
    signals_topic: str
    submitted_topic: str


def account_of(broker: str, strategy_id: str) -> Account:
    """The facts of ``strategy_id``'s account at ``broker``."""
    topics: dict[type, str] = {kind: broker_topic(broker, STAGE_TOPIC[kind]) for kind in _PUBLISHED}
    return Account(
        f"{broker}:{strategy_id}",
        broker,
        strategy_id,
        strategy_id,
        topics,
        broker_topic(broker, SIGNALS_RAW),
        broker_topic(broker, ORDERS_SUBMITTED),
    )


def too_far_ahead(held: HeldTick, newest: datetime, config: ShardConfig, clock: Any) -> Outbound:
    """The dead letter of a held tick the market went on without."""
    topic, key, value, partition, offset = held.origin
    reason = (
        f"field data.timestamp {held.at.isoformat()} is more than {config.max_tick_skew} "
        f"after the newest tick seen ({newest.isoformat()}) and no other tick followed it there"
    )
    letter = dead_letter(
        topic=topic,
        key=key,
        value=value,
        error_type="poison",
        error_class="TickSkewError",
        error_message=reason,
        service_name=config.service,
        dlq_timestamp=clock(newest),
        partition=partition,
        offset=offset,
    )
    return Outbound(dlq_topic(topic), letter.key, letter)
