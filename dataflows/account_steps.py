"""One account's steps, engine-free: the risk filter and the books, and the keys that route to them.

An *account* is one strategy at one broker; its key inside a flow is
``"<broker>:<strategy_id>"`` so brokers never share state. On Kafka the
message key stays ``<strategy_id>`` on each broker's own topics. The
per-stage flows (:mod:`dataflows.accounts`) drive these steps one at a time,
with Kafka in between.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from dataflows.clock import Clock
from operators.execution import order_id_of
from operators.portfolio import Portfolio, PortfolioState
from operators.risk import RiskFilter, RiskState, halted_rejection
from schemas.envelope import (
    FailedEnvelope,
    FilledEnvelope,
    PnlEnvelope,
    RejectedEnvelope,
    SignalEnvelope,
    ValidatedEnvelope,
    envelop,
    event_id,
)
from schemas.topics import account_key


class Mark(NamedTuple):
    """The latest price of an instrument for one account, at event time."""

    account: str
    instrument_token: int
    price: float
    timestamp: datetime
    tick_id: str
    correlation_id: str


def account_id(broker: str, strategy_id: str) -> str:
    """Return the in-flow key of one strategy's account at one broker."""
    return f"{broker}:{strategy_id}"


def account_of(item: Any) -> str:
    """Return the account an item (mark, signal, decision or order) belongs to."""
    if isinstance(item, Mark):
        return item.account
    data = item.data
    strategy_id = data.strategy_id if hasattr(data, "strategy_id") else data.original_signal.strategy_id
    return account_id(item.broker, strategy_id)


class RiskStep:
    """One account's risk filter: marks update prices, signals get a decision."""

    def __init__(
        self,
        risk: RiskFilter,
        clock: Clock,
        service: str,
        state: RiskState | None = None,
        *,
        dedupe: bool = True,
        halts: Callable[[str, str], str | None] | None = None,
    ) -> None:
        self._risk = risk
        self._halts = halts
        self._clock = clock
        self._source = f"{service}.risk"
        # Only a flow reading signals from Kafka can see one twice; in-process
        # signals come from a snapshot-consistent upstream, so remembering ids
        # there would only cost memory.
        self._dedupe = dedupe
        self.state = state if state is not None else risk.new_state()

    def on_mark(self, mark: Mark) -> None:
        """Remember the latest price of the mark's instrument."""
        self._risk.on_mark(self.state, mark.instrument_token, mark.price, mark.timestamp)

    def on_signal(self, signal: SignalEnvelope) -> ValidatedEnvelope | RejectedEnvelope | None:
        """Return the validated or rejected envelope of ``signal``; None if already decided.

        A redelivered signal (same id, e.g. after its producer restarted) is
        ignored: its decision was published the first time.
        """
        if self._dedupe and not self.state.seen_signals.add(signal.id):
            return None
        data = signal.data
        halted = self._halts(signal.broker, data.strategy_id) if self._halts is not None else None
        decision = halted_rejection(data, halted) if halted else self._risk.on_signal(self.state, data)
        decided = envelop(
            decision,
            id=event_id("risk_decision", signal.id),
            ts=self._clock(signal.data.timestamp),
            broker=signal.broker,
            cause=signal,
            source=self._source,
            key=account_key(signal.data.strategy_id),
        )
        if isinstance(decided, ValidatedEnvelope):
            self._risk.book(self.state, order_id_of(decided), decided.data)
        return decided  # type: ignore[return-value]

    def on_failed(self, failed: FailedEnvelope) -> None:
        """Release what a failed order booked, for its failed quantity (once: not again on a redelivery)."""
        self._risk.release_order(self.state, failed.data.order_id, failed.data.quantity)


@dataclass
class BooksState:
    """Recoverable state of one account's books: the portfolio and its last snapshot."""

    portfolio: PortfolioState
    last_snapshot_at: datetime | None = None
    pending: Mark | None = None

    def copy(self) -> BooksState:
        """Deep copy (marks are immutable)."""
        return BooksState(self.portfolio.copy(), self.last_snapshot_at, self.pending)


class PortfolioStep:
    """One account's books: fills move cash and positions, marks move P&L.

    Every newly applied fill yields a snapshot. Marks of held instruments
    yield at most one snapshot per ``snapshot_interval`` of event time; a
    mark inside the interval is kept pending and :meth:`flush` emits it (at
    end of input, or after a quiet spell in live flows), so the last
    snapshot always shows the latest marks.
    """

    def __init__(
        self,
        portfolio: Portfolio,
        clock: Clock,
        service: str,
        state: BooksState | None = None,
        snapshot_interval: timedelta = timedelta(seconds=1),
    ) -> None:
        self._portfolio = portfolio
        self._clock = clock
        self._source = f"{service}.portfolio"
        self._interval = snapshot_interval
        self.state = state if state is not None else BooksState(portfolio.new_state())

    def _snapshot(self, account: str, when: datetime, cause_id: str, correlation: str) -> PnlEnvelope:
        broker, strategy_id = account.split(":", 1)
        self.state.last_snapshot_at = when
        self.state.pending = None
        data = self._portfolio.snapshot(
            self.state.portfolio, strategy_id=strategy_id, broker=broker, timestamp=when
        )
        return PnlEnvelope(
            id=event_id("pnl_snapshot", account, cause_id),
            ts=self._clock(when),
            broker=broker,  # type: ignore[arg-type]
            correlation_id=correlation,
            causation_id=cause_id,
            source=self._source,
            version=1,
            key=account_key(strategy_id),
            data=data,
        )

    def on_mark(self, mark: Mark) -> PnlEnvelope | None:
        """Re-mark the instrument; a snapshot if held and the interval has passed."""
        if not self._portfolio.on_mark(self.state.portfolio, mark.instrument_token, mark.price):
            return None
        last = self.state.last_snapshot_at
        if last is None or mark.timestamp - last >= self._interval:
            return self._snapshot(mark.account, mark.timestamp, mark.tick_id, mark.correlation_id)
        self.state.pending = mark
        return None

    def on_fill(self, fill: FilledEnvelope) -> PnlEnvelope | None:
        """Apply a fill once; a snapshot unless its order was applied before."""
        if self._portfolio.on_fill(self.state.portfolio, fill.data):
            return self._snapshot(account_of(fill), fill.data.timestamp, fill.id, fill.correlation_id)
        return None

    @property
    def has_pending(self) -> bool:
        """Whether marks arrived since the last snapshot."""
        return self.state.pending is not None

    def flush(self) -> PnlEnvelope | None:
        """The snapshot held back by the interval, if any."""
        mark = self.state.pending
        if mark is None:
            return None
        return self._snapshot(mark.account, mark.timestamp, mark.tick_id, mark.correlation_id)
