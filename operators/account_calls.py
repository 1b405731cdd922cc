"""A trading shard's account part, run apart: the calls the shard makes of its books, recorded and replayed.

:class:`operators.shard.TradingShard` asks its books for three things, in
the order of its ticks: trade a signal, snapshot at a boundary, flush at
the end. :class:`RecordedBooks` stands in for
:class:`operators.account_books.AccountBooks` on the shard's side and
records those calls as plain values, one list per batch;
:class:`RemoteBooks` applies them, in the same order, to real books
somewhere else (another worker, another process). The books get exactly the
calls they would have got in the shard, so they publish exactly the same
messages.

A signal travels as a plain tuple of the signal's fields (:func:`signal_row`),
the other calls as :class:`AccountCall`: a batch's calls are pickled when
they cross to another process, and a plain tuple of strings, numbers and a
time pickles in a sixth of the time of a named tuple holding a struct.

A boundary or a flush carries the latest prices the books may mark held
positions with: those of the instruments the account side has been sent a
signal for (it can hold no other), and of those only the ones that changed
since they were last sent.

Engine-free and pure.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Final, NamedTuple

from operators.account_books import AccountBooks, PriceOf
from operators.decision import Decision
from operators.shard_state import InstrumentBook
from operators.strategy import StrategyConfig
from schemas.envelope import FailedEnvelope, FilledEnvelope, Outbound
from schemas.errors import AlphaPandaError
from schemas.events import TradingSignal

SIGNAL: Final = 0
BOUNDARY: Final = 1
FLUSH: Final = 2
RELOAD: Final = 3


class AccountCall(NamedTuple):
    """One call of a shard on its books.

    ``kind`` SIGNAL: ``signal`` with its ``cause`` and ``correlation``;
    BOUNDARY or FLUSH: at time ``at``, with the ``prices`` changed since the
    last call that carried prices; RELOAD: the active ``configs``.
    """

    kind: int
    signal: TradingSignal | None = None
    cause: str = ""
    correlation: str = ""
    at: datetime | None = None
    prices: dict[int, float] | None = None
    configs: tuple[StrategyConfig, ...] | None = None


SignalRow = tuple[Any, ...]
"""``(SIGNAL, strategy_id, token, side, quantity, confidence, metadata, price, at, cause, correlation)``."""


def signal_row(
    config_id: str, token: int, decision: Decision, price: float, at: datetime, cause: str, correlation: str
) -> SignalRow:
    """The recorded form of a strategy's decision on one tick (what :func:`trading_signal` is made of)."""
    side, quantity, confidence, metadata = (
        decision.side,
        decision.quantity,
        decision.confidence,
        decision.metadata,
    )
    return (SIGNAL, config_id, token, side, quantity, confidence, metadata, price, at, cause, correlation)


def signal_of(row: SignalRow) -> tuple[TradingSignal, str, str]:
    """The signal a :func:`signal_row` records, with its cause and correlation ids."""
    _kind, config_id, token, side, quantity, confidence, metadata, price, at, cause, correlation = row
    signal = TradingSignal(config_id, token, side, quantity, price, at, confidence, metadata)
    return signal, cause, correlation


class AccountsApartError(AlphaPandaError):
    """Something the account part run apart cannot do (it exists for replays)."""


class RecordedBooks:
    """The shard's side: records what :class:`AccountBooks` would be asked, for :meth:`take`."""

    def __init__(self, instruments: dict[int, InstrumentBook]) -> None:
        self._instruments = instruments
        self._calls: list[AccountCall | SignalRow] = []
        self._signalled: set[int] = set()
        self._sent: dict[int, float] = {}

    def reload(self, active: Sequence[StrategyConfig]) -> None:
        """The books trade for ``active`` from now on."""
        self._calls.append(AccountCall(RELOAD, configs=tuple(active)))

    def on_decision(
        self,
        out: list[Outbound],
        config_id: str,
        token: int,
        decision: Decision,
        price: float,
        at: datetime,
        cause: str,
        correlation: str,
    ) -> None:
        """Record the signal of ``decision``; ``out`` gets nothing here (the books publish where they run)."""
        self._calls.append(signal_row(config_id, token, decision, price, at, cause, correlation))
        self._signalled.add(token)

    def snapshots(self, out: list[Outbound], at: datetime, price_of: PriceOf) -> None:
        """Record a snapshot boundary at ``at``."""
        self._calls.append(AccountCall(BOUNDARY, at=at, prices=self._changed_prices()))

    def flush(self, out: list[Outbound], newest: datetime, price_of: PriceOf) -> None:
        """Record the flush at ``newest`` (end of input)."""
        self._calls.append(AccountCall(FLUSH, at=newest, prices=self._changed_prices()))

    def has_pending(self, newest: datetime | None) -> bool:
        """Whether a flush could owe snapshots (the books elsewhere know; this is their upper bound)."""
        return newest is not None and bool(self._signalled)

    def on_order_update(self, update: FilledEnvelope | FailedEnvelope, price_of: PriceOf) -> list[Outbound]:
        """Live order updates go to books that run with the shard, never to recorded ones."""
        msg = "accounts run apart take no live order updates: run live flows with the accounts in the shard"
        raise AccountsApartError(msg)

    def take(self) -> list[AccountCall | SignalRow]:
        """The calls recorded since the last take, in order."""
        calls, self._calls = self._calls, []
        return calls

    def _changed_prices(self) -> dict[int, float]:
        instruments, sent = self._instruments, self._sent
        changed = {}
        for token in self._signalled:
            price = instruments[token].price
            if sent.get(token) != price:
                changed[token] = sent[token] = price
        return changed


class RemoteBooks:
    """The books' side: applies recorded calls to :class:`AccountBooks` in order; what they publish out."""

    def __init__(self, books: AccountBooks) -> None:
        self.books = books
        self._prices: dict[int, float] = {}

    def apply(self, calls: Sequence[AccountCall | SignalRow]) -> list[Outbound]:
        """Every message the calls make the books publish, in the order the shard's books would have."""
        out: list[Outbound] = []
        books = self.books
        price_of: Callable[[int], float | None] = self._prices.get
        for call in calls:
            kind = call[0]
            if kind == SIGNAL:
                books.on_signal(out, *signal_of(call))
                continue
            assert isinstance(call, AccountCall)  # noqa: S101 - every other call is one
            if call.prices:
                self._prices.update(call.prices)
            if kind == BOUNDARY:
                books.snapshots(out, call.at, price_of)  # type: ignore[arg-type]
            elif kind == FLUSH:
                books.flush(out, call.at, price_of)  # type: ignore[arg-type]
            else:
                books.reload(call.configs or ())
        return out
