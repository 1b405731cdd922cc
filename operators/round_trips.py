"""Round trips: an account's fills grouped into closed position cycles.

A round trip of one instrument in one account starts with the fill that
opens a position from flat and ends with the fill that brings it back to
flat; fills in between may add to it or reduce it. A fill that crosses zero
(long 100, SELL 150) closes the cycle with the shares it needs and opens
the next one, in the other direction, with the rest; its fees are split
between the two in proportion to the shares.

Money is :class:`~decimal.Decimal`, account currency:

- ``gross_pnl`` = cash received − cash paid over the cycle's fills (before
  fees); once flat this equals the realized P&L of average-cost accounting
  (:mod:`operators.portfolio`).
- ``net_pnl`` = ``gross_pnl − fees``.
- ``entry_price`` / ``exit_price``: quantity-weighted mean price of the
  fills that opened (added to) / closed (reduced) the position.

A cycle still open after the last fill is an :class:`OpenCycle`, not a
round trip. Fills are used at most once per (broker, order_id).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Literal

from operators.money import to_decimal
from schemas.envelope import as_utc
from schemas.events import OrderFilled

Direction = Literal["LONG", "SHORT"]
AccountKey = tuple[str, str]
"""(broker, strategy_id)."""

_ZERO = Decimal(0)


@dataclass(frozen=True)
class RoundTrip:
    """One closed position cycle of one instrument in one account (times UTC)."""

    broker: str
    strategy_id: str
    instrument_token: int
    direction: Direction
    quantity: int
    """Shares opened over the cycle (= shares closed)."""
    entry_time: datetime
    exit_time: datetime
    entry_price: Decimal
    exit_price: Decimal
    gross_pnl: Decimal
    fees: Decimal
    fills: int

    @property
    def net_pnl(self) -> Decimal:
        """Return ``gross_pnl − fees``."""
        return self.gross_pnl - self.fees

    @property
    def holding_seconds(self) -> float:
        """Return the time from the opening to the closing fill, in seconds."""
        return (self.exit_time - self.entry_time).total_seconds()


@dataclass(frozen=True)
class OpenCycle:
    """A position still open after the last fill: ``quantity`` is signed."""

    broker: str
    strategy_id: str
    instrument_token: int
    quantity: int
    entry_time: datetime
    entry_price: Decimal
    fees: Decimal


@dataclass
class _Cycle:
    """The cycle being built for one instrument (mutable, private)."""

    entry_time: datetime
    direction: Direction = "LONG"
    position: int = 0
    opened: int = 0
    opened_notional: Decimal = _ZERO
    closed: int = 0
    closed_notional: Decimal = _ZERO
    cash: Decimal = _ZERO
    fees: Decimal = _ZERO
    fills: int = 0


@dataclass
class RoundTripBook:
    """Round trips and open cycles of every account, built fill by fill.

    Feed fills in time order with :meth:`add`; read :attr:`closed` and
    :meth:`open_cycles`.
    """

    closed: list[RoundTrip] = field(default_factory=list)
    _cycles: dict[tuple[str, str, int], _Cycle] = field(default_factory=dict)
    _seen: set[tuple[str, str]] = field(default_factory=set)

    def add(self, fill: OrderFilled) -> None:
        """Apply one fill; a (broker, order_id) seen before is ignored."""
        if (fill.broker, fill.order_id) in self._seen:
            return
        self._seen.add((fill.broker, fill.order_id))
        key = (fill.broker, fill.strategy_id, fill.instrument_token)
        when = as_utc(fill.timestamp)
        price, fees = to_decimal(fill.fill_price), to_decimal(fill.fees)
        signed = fill.quantity if fill.side == "BUY" else -fill.quantity
        cycle = self._cycles.get(key)
        if cycle is None or cycle.position == 0:
            cycle = self._cycles[key] = _Cycle(entry_time=when)
        if cycle.position == 0 or (cycle.position > 0) == (signed > 0):
            self._open(cycle, signed, price, fees)
            return
        closing = min(abs(signed), abs(cycle.position))
        rest = abs(signed) - closing
        closing_fees = fees * closing / abs(signed)
        sign = 1 if signed > 0 else -1
        self._close(cycle, sign * closing, price, closing_fees)
        if cycle.position == 0:
            self.closed.append(_finish(key, cycle, when))
        if rest:
            cycle = self._cycles[key] = _Cycle(entry_time=when)
            self._open(cycle, sign * rest, price, fees - closing_fees)

    @staticmethod
    def _open(cycle: _Cycle, signed: int, price: Decimal, fees: Decimal) -> None:
        if cycle.position == 0:
            cycle.direction = "LONG" if signed > 0 else "SHORT"
        cycle.position += signed
        cycle.opened += abs(signed)
        cycle.opened_notional += price * abs(signed)
        cycle.cash -= price * signed
        cycle.fees += fees
        cycle.fills += 1

    @staticmethod
    def _close(cycle: _Cycle, signed: int, price: Decimal, fees: Decimal) -> None:
        cycle.position += signed
        cycle.closed += abs(signed)
        cycle.closed_notional += price * abs(signed)
        cycle.cash -= price * signed
        cycle.fees += fees
        cycle.fills += 1

    def open_cycles(self) -> list[OpenCycle]:
        """Return the positions still open, ordered by account and instrument."""
        return [
            OpenCycle(
                broker=broker,
                strategy_id=strategy_id,
                instrument_token=token,
                quantity=cycle.position,
                entry_time=cycle.entry_time,
                entry_price=cycle.opened_notional / cycle.opened,
                fees=cycle.fees,
            )
            for (broker, strategy_id, token), cycle in sorted(self._cycles.items())
            if cycle.position != 0
        ]


def _finish(key: tuple[str, str, int], cycle: _Cycle, when: datetime) -> RoundTrip:
    broker, strategy_id, token = key
    return RoundTrip(
        broker=broker,
        strategy_id=strategy_id,
        instrument_token=token,
        direction=cycle.direction,
        quantity=cycle.opened,
        entry_time=cycle.entry_time,
        exit_time=when,
        entry_price=cycle.opened_notional / cycle.opened,
        exit_price=cycle.closed_notional / cycle.closed,
        gross_pnl=cycle.cash,
        fees=cycle.fees,
        fills=cycle.fills,
    )


def round_trips(fills: Iterable[OrderFilled]) -> tuple[list[RoundTrip], list[OpenCycle]]:
    """Return the closed round trips (in closing order) and the open cycles of ``fills``.

    In: fills of any accounts, in time order (ties in stream order).
    """
    book = RoundTripBook()
    for fill in fills:
        book.add(fill)
    return book.closed, book.open_cycles()
