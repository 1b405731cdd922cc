"""The account part of trading: risk, execution and books of a set of accounts.

An account is one strategy at one broker. Its steps span instruments (cash,
positions, the daily trade count), so they must see the account's signals in
one order: :class:`AccountBooks` is fed signals one by one, in that order, by
:class:`operators.shard.TradingShard` (one shard of whole strategies) or by
:class:`operators.account_shard.AccountShard` (signals merged from instrument
groups). Both produce the same messages for the same order.

Per signal: a signal envelope per account of its strategy, a risk decision,
execution (injected) and, for fills, the books. Per snapshot boundary: one
P&L snapshot of every account that changed or holds a position.

Engine-free: the clock, the executor and the kill switch are injected.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from operators.money import to_decimal
from operators.portfolio import Portfolio
from operators.risk import RiskFilter, halted_rejection
from operators.shard_state import Account, AccountState, ShardConfig, account_of
from operators.strategy import StrategyConfig
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
    ValidatedEnvelope,
    event_id,
    uuid5_of,
)
from schemas.events import TradingSignal, ValidatedSignal
from schemas.topics import ORDERS_FAILED, ORDERS_FILLED, broker_topic, dlq_topic, signal_key

Clock = Callable[[datetime], datetime]
Execute = Callable[[ValidatedEnvelope], list[AnyEnvelope]]
"""Turns a validated signal into its order events (submitted, filled, failed or a dead letter)."""

PriceOf = Callable[[int], float | None]
"""The latest price of an instrument token, or None if none was seen."""


class AccountBooks:
    """Risk, execution and books of the accounts of some strategies.

    ``accounts`` is the recoverable state, ``broker:strategy_id`` ->
    :class:`AccountState`; it is shared, not copied (the owner snapshots it).
    """

    def __init__(
        self,
        config: ShardConfig,
        risk: RiskFilter,
        portfolio: Portfolio,
        execute: Execute,
        clock: Clock,
        accounts: dict[str, AccountState],
        *,
        halts: Callable[[str, str], str | None] | None = None,
    ) -> None:
        self.config = config
        self._risk = risk
        self._portfolio = portfolio
        self._execute = execute
        self._clock = clock
        self._halts = halts
        self._signal_source = f"{config.service}.strategies"
        self._risk_source = f"{config.service}.risk"
        self._books_source = f"{config.service}.portfolio"
        self.states = accounts
        self._of: dict[str, tuple[Account, ...]] = {}

    def reload(self, active: Sequence[StrategyConfig]) -> None:
        """Trade for ``active`` strategies from now on; accounts already known keep their state."""
        self._of = {c.id: tuple(account_of(b, c.id) for b in c.brokers(self.config.brokers)) for c in active}
        for account in (a for accounts in self._of.values() for a in accounts):
            if account.name not in self.states:
                self.states[account.name] = AccountState(self._risk.new_state(), self._portfolio.new_state())

    @property
    def names(self) -> list[str]:
        """Every account traded, ``broker:strategy_id``."""
        return [a.name for accounts in self._of.values() for a in accounts]

    # --- signals ----------------------------------------------------------------

    def on_signal(self, out: list[Outbound], signal: TradingSignal, cause: str, correlation: str) -> None:
        """Publish ``signal`` for every account of its strategy and trade it there.

        ``cause``: the id of the tick that caused it; ``correlation``: the
        tick's correlation id (or ``cause``).
        """
        strategy_id = signal.strategy_id
        key = signal_key(strategy_id, signal.instrument_token)
        for account in self._of[strategy_id]:
            envelope = SignalEnvelope(
                id=uuid5_of(f"trading_signal|{account.broker}|{strategy_id}|{cause}"),
                ts=self._clock(signal.timestamp),
                broker=account.broker,  # type: ignore[arg-type]
                correlation_id=correlation,
                causation_id=cause,
                source=self._signal_source,
                version=SCHEMA_VERSION,
                key=key,
                data=signal,
            )
            out.append(Outbound(account.signals_topic, key, envelope, account.key))
            self._decide(out, account, envelope)

    def on_decision(
        self,
        out: list[Outbound],
        config_id: str,
        token: int,
        decision: Any,
        price: float,
        at: datetime,
        cause: str,
        correlation: str,
    ) -> None:
        """:meth:`on_signal` for the signal a strategy's ``decision`` on one tick makes."""
        self.on_signal(out, trading_signal(config_id, token, decision, price, at), cause, correlation)

    def _decide(self, out: list[Outbound], account: Account, signal: SignalEnvelope) -> None:
        """Risk, execution and books for one signal of one account."""
        state = self.states[account.name]
        data = signal.data
        token = data.instrument_token
        # Risk judges against the latest tick of the instrument: the one that caused the signal.
        state.risk.last_prices[token] = (data.price, data.timestamp)
        halted = self._halts(account.broker, account.strategy_id) if self._halts is not None else None
        decision = halted_rejection(data, halted) if halted else self._risk.on_signal(state.risk, data)
        kind = ValidatedEnvelope if isinstance(decision, ValidatedSignal) else RejectedEnvelope
        decided = kind(
            id=uuid5_of(f"risk_decision|{signal.id}"),
            ts=self._clock(data.timestamp),
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
                self._apply_fill(state, order, data.price)
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

    # --- later reports of live orders ---------------------------------------------

    def on_order_update(self, update: FilledEnvelope | FailedEnvelope, price_of: PriceOf) -> list[Outbound]:
        """Apply a broker's later report on a live order this flow placed.

        In: an envelope of ``<broker>.orders.filled`` (the exchange's fill,
        e.g. from ``dataflows.zerodha_updates``) or ``<broker>.orders.failed``
        (rejected, cancelled, or the unfilled rest of a partly filled order).
        A fill moves the account's books once per order id, snapshotted at
        the next snapshot boundary or flush; a failure releases what risk
        booked for the order, for the failed quantity, once. Out: nothing,
        since the report is on its topic already; or, for an account these
        books have never had, its dead letter on the topic's ``.dlq``.
        """
        data = update.data
        state = self.states.get(f"{update.broker}:{data.strategy_id}")
        if state is None:
            return [self._unknown_account(update)]
        if isinstance(update, FilledEnvelope):
            self._apply_fill(state, update, price_of(data.instrument_token))
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

    # --- snapshots ----------------------------------------------------------------

    def snapshots(self, out: list[Outbound], at: datetime, price_of: PriceOf) -> None:
        """At a snapshot boundary: snapshot every account that changed or holds a position."""
        for accounts in self._of.values():
            for account in accounts:
                state = self.states[account.name]
                if state.changed or _holds(state):
                    out.append(self._snapshot(account, state, at, price_of))

    def flush(self, out: list[Outbound], newest: datetime, price_of: PriceOf) -> None:
        """The snapshots still owed at ``newest`` (end of input, quiet spell)."""
        for accounts in self._of.values():
            for account in accounts:
                state = self.states[account.name]
                if _owed(state, newest):
                    out.append(self._snapshot(account, state, newest, price_of))

    def has_pending(self, newest: datetime | None) -> bool:
        """Whether some account changed, or holds positions marked, since its last snapshot."""
        return newest is not None and any(_owed(a, newest) for a in self.states.values())

    def _snapshot(self, account: Account, state: AccountState, at: datetime, price_of: PriceOf) -> Outbound:
        for token, holding in state.books.holdings.items():
            if holding.quantity:
                price = price_of(token)
                if price is not None:
                    holding.last_price = to_decimal(price)
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


def _holds(state: AccountState) -> bool:
    return any(h.quantity for h in state.books.holdings.values())


def _owed(state: AccountState, newest: datetime) -> bool:
    return state.changed or (_holds(state) and state.last_snapshot_at != newest)


def trading_signal(config_id: str, token: int, decision: Any, price: float, at: datetime) -> TradingSignal:
    """The signal a strategy's decision on one tick makes."""
    return TradingSignal(
        strategy_id=config_id,
        instrument_token=token,
        signal_type=decision.side,
        quantity=decision.quantity,
        price=price,
        timestamp=at,
        confidence=decision.confidence,
        metadata=decision.metadata,
    )
