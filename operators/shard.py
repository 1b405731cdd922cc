"""A trading shard: strategies, risk, execution and books over batches of ticks.

The batch-native hot path of the replay and live all-in-one flows. A shard
owns a set of strategies and every account (strategy x broker) they trade,
so one account's risk decisions, orders and fills are applied in exactly the
order its ticks arrived, whichever worker hosts the shard. Work is paid per
batch: the engine hands over one batch of decoded ticks and gets back one
list of outbound messages.

Per tick: the instrument's occurrence count (tick identity), its latest
price (which risk and the books read directly: no mark messages), and every
strategy trading it. Per signal: a risk decision, execution (injected) and,
for fills, the books. Per snapshot interval of event time: one P&L
snapshot of every account that changed, plus one at end of input.

Engine-free: the clock and the executor are injected.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final, NamedTuple

from operators.decision import Decision
from operators.errors import ConfigError
from operators.money import to_decimal
from operators.portfolio import Portfolio, PortfolioState
from operators.risk import RiskFilter, RiskState, halted_rejection
from operators.strategy import InstrumentState, InstrumentStrategies, StrategyConfig
from schemas.codec import dead_letter, encode
from schemas.envelope import (
    SCHEMA_VERSION,
    AnyEnvelope,
    DlqEnvelope,
    FailedEnvelope,
    FilledEnvelope,
    Outbound,
    PnlEnvelope,
    RejectedEnvelope,
    SignalEnvelope,
    SubmittedEnvelope,
    TickOccurrences,
    ValidatedEnvelope,
    event_id,
    tick_id_of,
    uuid5_of,
)
from schemas.events import TradingSignal, ValidatedSignal
from schemas.topics import (
    MARKET_TICKS,
    ORDERS_FAILED,
    ORDERS_FILLED,
    ORDERS_SUBMITTED,
    PNL_SNAPSHOTS,
    SIGNALS_RAW,
    SIGNALS_REJECTED,
    SIGNALS_VALIDATED,
    broker_topic,
    dlq_topic,
    signal_key,
)

Clock = Callable[[datetime], datetime]
Execute = Callable[[ValidatedEnvelope], list[AnyEnvelope]]
"""Turns a validated signal into its order events (submitted, filled, failed or a dead letter)."""

_STAGE_OF: dict[type, str] = {
    ValidatedEnvelope: SIGNALS_VALIDATED,
    RejectedEnvelope: SIGNALS_REJECTED,
    FilledEnvelope: ORDERS_FILLED,
    FailedEnvelope: ORDERS_FAILED,
    PnlEnvelope: PNL_SNAPSHOTS,
}


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
class _Account:
    """The fixed facts of one account: who, where it publishes, how it is keyed."""

    name: str
    broker: str
    strategy_id: str
    key: str
    topics: dict[type, str]
    signals_topic: str
    submitted_topic: str


def _account(broker: str, strategy_id: str) -> _Account:
    topics = {kind: broker_topic(broker, stage) for kind, stage in _STAGE_OF.items()}
    return _Account(
        f"{broker}:{strategy_id}",
        broker,
        strategy_id,
        strategy_id,
        topics,
        broker_topic(broker, SIGNALS_RAW),
        broker_topic(broker, ORDERS_SUBMITTED),
    )


class TradingShard:
    """The logic of one shard over a :class:`ShardState`.

    In: batches of decoded producer-form ticks (``data`` a
    :class:`MarketTick` with a UTC timestamp). Out: lists of
    :class:`Outbound` for every topic (signals, decisions, orders,
    snapshots, and dead letters of ticks beyond the skew).
    """

    def __init__(  # noqa: PLR0913 - the collaborators are injected
        self,
        configs: Sequence[StrategyConfig],
        config: ShardConfig,
        risk: RiskFilter,
        portfolio: Portfolio,
        execute: Execute,
        clock: Clock,
        state: ShardState | None = None,
        *,
        emit_dead_letters: bool = True,
        halts: Callable[[str, str], str | None] | None = None,
    ) -> None:
        self.config = config
        self._halts = halts
        self._risk = risk
        self._portfolio = portfolio
        self._execute = execute
        self._clock = clock
        self._emit_dead = emit_dead_letters
        self._signal_source = f"{config.service}.strategies"
        self._risk_source = f"{config.service}.risk"
        self._books_source = f"{config.service}.portfolio"
        self.state = state if state is not None else ShardState()
        self._runs: dict[int, list[tuple[StrategyConfig, Any, Any]]] = {}
        self.reload(configs)

    # --- configuration --------------------------------------------------------

    def reload(self, configs: Sequence[StrategyConfig]) -> None:
        """Adopt a new strategy set; unchanged strategies keep their windows."""
        active = [c for c in configs if c.is_active]
        self._strategies = InstrumentStrategies(active)
        self._runs.clear()
        self._accounts: dict[str, tuple[_Account, ...]] = {}
        for config in active:
            self._accounts[config.id] = tuple(
                _account(b, config.id) for b in config.brokers(self.config.brokers)
            )
        for account in (a for accounts in self._accounts.values() for a in accounts):
            if account.name not in self.state.accounts:
                self.state.accounts[account.name] = AccountState(
                    self._risk.new_state(), self._portfolio.new_state()
                )
        for token, book in list(self.state.instruments.items()):
            self._strategies.reconcile(book.strategies, token)
            if not self._strategies.strategies_for(token):
                del self.state.instruments[token]

    @property
    def account_names(self) -> list[str]:
        """Every account of the shard, ``broker:strategy_id``."""
        return [a.name for accounts in self._accounts.values() for a in accounts]

    # --- the hot path ---------------------------------------------------------

    def on_batch(  # noqa: C901 - the per-tick loop stays in one frame: no call per tick it can avoid
        self, ticks: Sequence[Any], times: Sequence[datetime], origins: Sequence[Any] = ()
    ) -> list[Outbound]:
        """Run one batch of ticks in order; return every message it caused.

        ``ticks[i]``: a producer-form tick (``data`` with the
        :class:`MarketTick` fields), ``times[i]`` its exchange time in UTC.
        ``origins[i]`` (optional) is where it came from, for the dead letter
        of a tick beyond the skew: ``(topic, key, value, partition, offset)``.
        """
        out: list[Outbound] = []
        state = self.state
        instruments = state.instruments
        runs = self._runs
        skew = self.config.max_tick_skew
        newest = state.newest
        due = state.next_snapshot_at
        position = -1
        for tick_in, at in zip(ticks, times, strict=True):
            position += 1
            if newest is None or at > newest:
                if newest is not None and at - newest > skew:
                    state.newest, state.next_snapshot_at = newest, due
                    self._hold(out, tick_in, at, origins, position)
                    newest, due = state.newest, state.next_snapshot_at
                    continue
                newest = at
            if state.held:
                state.since_held += 1
                if state.since_held > REFUTE_AFTER:
                    self._refute(out, newest)
            if due is None or at >= due:
                # Before this tick: the books as of the boundary, the same in every shard.
                state.newest = newest
                self._snapshots(out, at)
                due = state.next_snapshot_at
            tick = tick_in.data
            token = tick.instrument_token
            price = tick.last_price
            book = instruments.get(token)
            if book is None:
                if not self._strategies.strategies_for(token):
                    continue  # valid, but no strategy trades it
                book = instruments[token] = InstrumentBook(self._strategies.new_state())
            occurrence = book.occurrences.next(at, price)
            book.price = price
            book.tick_id = tick_in.id or (tick_id_of(token, at, price, occurrence) if occurrence else "")
            book.tick_at = at
            run = runs.get(token)
            if run is None:
                run = self._run_for(token, book)
            signals = None
            for config, on_price, strategy_state in run:
                decision = on_price(strategy_state, price)
                if decision is not None:
                    if signals is None:
                        signals = []
                    signals.append((config, decision))
            if signals:
                self._on_decisions(out, tick_in, tick, at, book, signals)
        state.newest = newest
        return out

    def _run_for(self, token: int, book: InstrumentBook) -> list[tuple[StrategyConfig, Any, Any]]:
        """The strategies of ``token`` with their states, cached until the next reload or restore."""
        run = []
        for config in self._strategies.strategies_for(token):
            logic, strategy_state = self._strategies.runner_state(book.strategies, config.id)
            run.append((config, logic.on_price, strategy_state))
        self._runs[token] = run
        return run

    def _tick_id(self, book: InstrumentBook, token: int, price: float) -> str:
        if not book.tick_id and book.tick_at is not None:
            book.tick_id = tick_id_of(token, book.tick_at, price, 0)
        return book.tick_id

    def _on_decisions(  # noqa: PLR0913 - the tick in its three forms
        self,
        out: list[Outbound],
        tick_in: Any,
        tick: Any,
        at: datetime,
        book: InstrumentBook,
        decisions: list[tuple[StrategyConfig, Decision]],
    ) -> None:
        token = tick.instrument_token
        cause = self._tick_id(book, token, tick.last_price)
        correlation = tick_in.correlation_id or cause
        for config, decision in decisions:
            signal = TradingSignal(
                strategy_id=config.id,
                instrument_token=token,
                signal_type=decision.side,
                quantity=decision.quantity,
                price=tick.last_price,
                timestamp=at,
                confidence=decision.confidence,
                metadata=decision.metadata,
            )
            key = signal_key(config.id, token)
            for account in self._accounts[config.id]:
                envelope = SignalEnvelope(
                    id=uuid5_of(f"trading_signal|{account.broker}|{config.id}|{cause}"),
                    ts=self._clock(at),
                    broker=account.broker,  # type: ignore[arg-type]
                    correlation_id=correlation,
                    causation_id=cause,
                    source=self._signal_source,
                    version=SCHEMA_VERSION,
                    key=key,
                    data=signal,
                )
                out.append(Outbound(account.signals_topic, key, envelope, account.key))
                self._decide(out, account, envelope, book)

    def _decide(
        self, out: list[Outbound], account: _Account, signal: SignalEnvelope, book: InstrumentBook
    ) -> None:
        """Risk, execution and books for one signal of one account."""
        state = self.state.accounts[account.name]
        token = signal.data.instrument_token
        # Risk judges against the latest tick of the instrument, not a mark.
        state.risk.last_prices[token] = (book.price, book.tick_at)
        halted = self._halts(account.broker, account.strategy_id) if self._halts is not None else None
        decision = (
            halted_rejection(signal.data, halted) if halted else self._risk.on_signal(state.risk, signal.data)
        )
        kind = ValidatedEnvelope if isinstance(decision, ValidatedSignal) else RejectedEnvelope
        decided = kind(
            id=uuid5_of(f"risk_decision|{signal.id}"),
            ts=self._clock(signal.data.timestamp),
            broker=signal.broker,
            correlation_id=signal.correlation_id,
            causation_id=signal.id,
            source=self._risk_source,
            version=SCHEMA_VERSION,
            key=account.key,
            data=decision,  # type: ignore[arg-type]
        )
        out.append(Outbound(account.topics[type(decided)], account.key, decided, account.key))
        if not isinstance(decided, ValidatedEnvelope):
            return
        failed = False
        pending: SubmittedEnvelope | None = None
        for order in self._execute(decided):
            if isinstance(order, DlqEnvelope):
                topic = dlq_topic(order.data.dlq_metadata.original_topic)
                out.append(Outbound(topic, order.key, order, account.key))
                failed = True
                continue
            topic = account.topics.get(type(order), account.submitted_topic)
            out.append(Outbound(topic, account.key, order, account.key))
            if isinstance(order, FailedEnvelope):
                failed = True
            elif isinstance(order, FilledEnvelope):
                pending = None
                self._apply_fill(state, order, book.price)
            elif isinstance(order, SubmittedEnvelope):
                pending = order
        if failed:
            self._risk.release(state.risk, decided.data)
        elif pending is not None:
            # A live order, still open: its failure, reported later, releases this booking.
            self._risk.book(state.risk, pending.data.order_id, decided.data)

    def _apply_fill(self, state: AccountState, fill: FilledEnvelope, price: float | None) -> None:
        """Move the books by ``fill`` (once per order id), marking its instrument at ``price`` if known."""
        if price is not None:
            state.books.marks[fill.data.instrument_token] = price
        if self._portfolio.on_fill(state.books, fill.data):
            state.changed = True
            state.cause, state.correlation = fill.id, fill.correlation_id

    # --- later reports of live orders -------------------------------------------

    def on_order_update(self, update: FilledEnvelope | FailedEnvelope) -> list[Outbound]:
        """Apply a broker's later report on a live order this flow placed.

        In: an envelope of ``<broker>.orders.filled`` (the exchange's fill,
        e.g. from ``dataflows.zerodha_updates``) or ``<broker>.orders.failed``
        (rejected, cancelled, or the unfilled rest of a partly filled order).
        A fill moves the account's books once per order id, snapshotted at
        the next snapshot boundary or flush; a failure releases what risk
        booked for the order, for the failed quantity, once. Out: nothing,
        since the report is on its topic already; or, for an account this
        shard has never had, its dead letter on the topic's ``.dlq``.
        """
        data = update.data
        state = self.state.accounts.get(f"{update.broker}:{data.strategy_id}")
        if state is None:
            return [self._unknown_account(update)]
        if isinstance(update, FilledEnvelope):
            book = self.state.instruments.get(data.instrument_token)
            self._apply_fill(state, update, book.price if book is not None else None)
        else:
            self._risk.release_order(state.risk, data.order_id, data.quantity)
        return []

    def _unknown_account(self, update: FilledEnvelope | FailedEnvelope) -> Outbound:
        stage = ORDERS_FILLED if isinstance(update, FilledEnvelope) else ORDERS_FAILED
        topic = broker_topic(update.broker, stage)
        data = update.data
        letter = dead_letter(
            topic=topic,
            key=update.key,
            value=encode(update),
            error_type="business",
            error_class="UnknownAccountError",
            error_message=(
                f"order update {data.order_id}: no {update.broker} account for strategy "
                f"{data.strategy_id!r} in this flow; not applied"
            ),
            service_name=self.config.service,
            dlq_timestamp=self._clock(data.timestamp),
            broker=update.broker,
        )
        return Outbound(dlq_topic(topic), letter.key, letter, update.key)

    # --- snapshots ------------------------------------------------------------

    def _held_moved(self, account: AccountState) -> bool:
        return any(h.quantity for h in account.books.holdings.values())

    def _snapshots(self, out: list[Outbound], at: datetime) -> None:
        """Snapshot every account changed since its last snapshot; schedule the next round."""
        for accounts in self._accounts.values():
            for account in accounts:
                state = self.state.accounts[account.name]
                if state.changed or self._held_moved(state):
                    out.append(self._snapshot(account, state, at))
        self.state.next_snapshot_at = at + self.config.snapshot_interval

    def _snapshot(self, account: _Account, state: AccountState, at: datetime) -> Outbound:
        instruments = self.state.instruments
        for token, holding in state.books.holdings.items():
            book = instruments.get(token)
            if holding.quantity and book is not None:
                holding.last_price = to_decimal(book.price)
        data = self._portfolio.snapshot(
            state.books, strategy_id=account.strategy_id, broker=account.broker, timestamp=at
        )
        state.last_snapshot_at = at
        state.changed = False
        state.snapshots += 1
        envelope = PnlEnvelope(
            id=event_id("pnl_snapshot", account.name, state.snapshots),
            ts=self._clock(at),
            broker=account.broker,  # type: ignore[arg-type]
            correlation_id=state.correlation,
            causation_id=state.cause,
            source=self._books_source,
            version=SCHEMA_VERSION,
            key=account.key,
            data=data,
        )
        return Outbound(account.topics[PnlEnvelope], account.key, envelope, account.key)

    def flush(self, *, end_of_input: bool = True) -> list[Outbound]:
        """The snapshots still owed: every account changed since its last one (end of input, quiet spell).

        At the end of input, ticks still held beyond the skew are dead-lettered.
        """
        newest = self.state.newest
        if newest is None:
            return []
        out: list[Outbound] = []
        if end_of_input and self.state.held:
            self._refute(out, newest)
        for accounts in self._accounts.values():
            for account in accounts:
                state = self.state.accounts[account.name]
                if self._owed(state, newest):
                    out.append(self._snapshot(account, state, newest))
        return out

    def _owed(self, state: AccountState, newest: datetime) -> bool:
        return state.changed or (self._held_moved(state) and state.last_snapshot_at != newest)

    @property
    def has_pending(self) -> bool:
        """Whether some account changed, or holds positions marked, since its last snapshot."""
        newest = self.state.newest
        return newest is not None and any(self._owed(a, newest) for a in self.state.accounts.values())

    def snapshot(self) -> ShardState:
        """A copy of the recoverable state."""
        return self.state.copy()

    # --- dead letters ----------------------------------------------------------

    def _hold(self, out: list[Outbound], tick_in: Any, at: datetime, origins: Sequence[Any], i: int) -> None:
        """Hold a tick beyond the skew; replay the held ones once others confirm the jump."""
        origin = tuple(origins[i]) if i < len(origins) else (MARKET_TICKS, None, b"", None, None)
        state = self.state
        state.held.append(HeldTick(tick_in, at, origin))
        if len(state.held) == 1:
            state.since_held = 0
        instruments = {h.tick.data.instrument_token for h in state.held}
        if len(state.held) >= CONFIRM_AFTER or len(instruments) >= 2:
            held, state.held = state.held, []
            state.newest = held[0].at  # a real gap in the market: time moves on
            out.extend(self.on_batch([h.tick for h in held], [h.at for h in held], [h.origin for h in held]))

    def _refute(self, out: list[Outbound], newest: datetime | None) -> None:
        """Dead-letter the held ticks: the market went on without them."""
        held, self.state.held = self.state.held, []
        if self._emit_dead and newest is not None:
            out.extend(self._too_far_ahead(h, newest) for h in held)

    def _too_far_ahead(self, held: HeldTick, newest: datetime) -> Outbound:
        topic, key, value, partition, offset = held.origin
        reason = (
            f"field data.timestamp {held.at.isoformat()} is more than {self.config.max_tick_skew} "
            f"after the newest tick seen ({newest.isoformat()}) and no other tick followed it there"
        )
        letter = dead_letter(
            topic=topic,
            key=key,
            value=value,
            error_type="poison",
            error_class="TickSkewError",
            error_message=reason,
            service_name=self.config.service,
            dlq_timestamp=self._clock(newest),
            partition=partition,
            offset=offset,
        )
        return Outbound(dlq_topic(topic), letter.key, letter)
