"""Portfolio accounting of one account (one strategy at one broker).

Fills move cash and positions; ticks mark positions to market. All money is
:class:`~decimal.Decimal` inside and float in the :class:`PnlSnapshot`.

- BUY ``q`` at ``p`` with fees ``f``: cash −= q·p + f. SELL: cash += q·p − f.
- A fill that adds to a position moves its average price to the
  quantity-weighted mean; one that reduces it realizes ``(p − avg)·q`` per
  share closed (sign-aware for shorts) and keeps the average; one that
  crosses zero closes the old side and opens the rest at ``p``.
- Unrealized P&L is ``(last − avg)·quantity``; ``last`` is the latest mark
  of a held instrument, or the latest fill price.
- ``total_pnl = realized + unrealized − fees`` and
  ``total_value = cash + Σ quantity·last``, so
  ``total_value − starting_cash == total_pnl``.

Fills are applied at most once per ``order_id`` (delivery is at least once).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple

from operators.dedupe import RecentIds
from operators.money import to_decimal
from operators.parameters import build_config, require
from schemas.events import OrderFilled, PnlSnapshot, Position

_ZERO = Decimal(0)


@dataclass(frozen=True)
class PortfolioConfig:
    """``starting_cash``: cash of a new account (account currency, >= 0)."""

    starting_cash: Decimal = Decimal("1000000")

    def __post_init__(self) -> None:
        """Reject negative starting cash."""
        require(self.starting_cash >= 0, self, "starting_cash", self.starting_cash, "a number >= 0")

    @classmethod
    def from_parameters(cls, parameters: Mapping[str, Any]) -> PortfolioConfig:
        """Build a config from a parameter mapping.

        Raises:
            ConfigError: unknown name, wrong type or negative value.
        """
        return build_config(cls, parameters)


@dataclass
class Holding:
    """One instrument in the account.

    ``quantity``: shares, negative when short. ``average_price``: average
    entry price of the open quantity (0 when flat). ``realized_pnl``: profit
    realized on closed shares, before fees. ``last_price``: latest mark or fill.
    """

    quantity: int
    average_price: Decimal
    realized_pnl: Decimal
    last_price: Decimal

    @property
    def unrealized_pnl(self) -> Decimal:
        """Return ``(last_price − average_price) · quantity``."""
        return (self.last_price - self.average_price) * self.quantity


@dataclass
class PortfolioState:
    """One account: cash, fees paid, holdings by instrument token, applied order ids.

    ``marks`` holds the latest tick price of every instrument the account
    trades, held or not, so a new position is marked to the market rather
    than to its own (slipped) fill price.
    """

    cash: Decimal
    fees_paid: Decimal
    holdings: dict[int, Holding]
    applied_orders: RecentIds
    marks: dict[int, float] = field(default_factory=dict)

    def copy(self) -> PortfolioState:
        """Return a copy that shares no mutable data with this state."""
        return PortfolioState(
            self.cash,
            self.fees_paid,
            {token: replace(holding) for token, holding in self.holdings.items()},
            self.applied_orders.copy(),
            dict(self.marks),
        )


class Valuation(NamedTuple):
    """Account totals in account currency, exact (Decimal)."""

    realized_pnl: Decimal
    unrealized_pnl: Decimal
    fees_paid: Decimal
    total_pnl: Decimal
    total_value: Decimal


def _apply(holding: Holding, signed_quantity: int, price: Decimal) -> None:
    """Move ``holding`` by ``signed_quantity`` shares traded at ``price``."""
    old = holding.quantity
    new = old + signed_quantity
    if old == 0 or (old > 0) == (signed_quantity > 0):
        total_cost = holding.average_price * abs(old) + price * abs(signed_quantity)
        holding.average_price = total_cost / abs(new)
    else:
        closed = min(abs(old), abs(signed_quantity))
        direction = 1 if old > 0 else -1
        holding.realized_pnl += (price - holding.average_price) * closed * direction
        if new == 0:
            holding.average_price = _ZERO
        elif (new > 0) != (old > 0):
            holding.average_price = price
    holding.quantity = new
    holding.last_price = price


class Portfolio:
    """Accounting logic of one account: feed it fills and marks, ask for snapshots."""

    def __init__(self, config: PortfolioConfig) -> None:
        self.config = config

    def new_state(self) -> PortfolioState:
        """Return an account holding only its starting cash."""
        return PortfolioState(self.config.starting_cash, _ZERO, {}, RecentIds())

    def on_fill(self, state: PortfolioState, fill: OrderFilled) -> bool:
        """Apply ``fill`` to ``state`` unless its ``order_id`` was applied already.

        Returns ``True`` when the fill changed the account, ``False`` for a
        duplicate (the state is then untouched).
        """
        if fill.order_id in state.applied_orders:
            return False
        price = to_decimal(fill.fill_price)
        fees = to_decimal(fill.fees)
        signed = fill.quantity if fill.side == "BUY" else -fill.quantity
        holding = state.holdings.get(fill.instrument_token)
        if holding is None:
            holding = state.holdings[fill.instrument_token] = Holding(0, _ZERO, _ZERO, price)
        _apply(holding, signed, price)
        # An open position is marked to the market; a closed one keeps its
        # exit price, which (unlike a mark) does not depend on arrival order.
        mark = state.marks.get(fill.instrument_token)
        holding.last_price = to_decimal(mark) if holding.quantity and mark is not None else price
        state.cash -= price * signed + fees
        state.fees_paid += fees
        state.applied_orders.add(fill.order_id)  # bounded: see operators.dedupe
        return True

    def on_mark(self, state: PortfolioState, token: int, price: float) -> bool:
        """Record the latest tick price of ``token``; re-mark it if held.

        Returns ``True`` when a non-zero position was re-marked (the snapshot
        may change), ``False`` when the account does not hold ``token``.
        """
        state.marks[token] = price  # converted to Decimal only when a position uses it
        holding = state.holdings.get(token)
        if holding is None or holding.quantity == 0:
            return False
        holding.last_price = to_decimal(price)
        return True

    def adopt(self, state: PortfolioState, token: int, quantity: int, average_price: Decimal) -> None:
        """Take a broker's figures for ``token``: ``quantity`` shares at ``average_price``.

        Start-of-day reconciliation (``reconcile --adopt``). Cash, fees and
        realized P&L stay as they are; a flat position's average price is 0.
        An open position keeps its mark, or is marked at ``average_price``.
        """
        holding = state.holdings.get(token)
        if holding is None:
            holding = state.holdings[token] = Holding(0, _ZERO, _ZERO, average_price)
        holding.quantity = quantity
        holding.average_price = average_price if quantity else _ZERO
        mark = state.marks.get(token)
        if quantity and mark is not None:
            holding.last_price = to_decimal(mark)

    def valuation(self, state: PortfolioState) -> Valuation:
        """Return the account's exact totals."""
        realized = unrealized = market = _ZERO
        for h in state.holdings.values():  # one pass; each sum in holdings order, as sum() would
            realized += h.realized_pnl
            unrealized += (h.last_price - h.average_price) * h.quantity
            market += h.last_price * h.quantity
        return Valuation(
            realized_pnl=realized,
            unrealized_pnl=unrealized,
            fees_paid=state.fees_paid,
            total_pnl=realized + unrealized - state.fees_paid,
            total_value=state.cash + market,
        )

    def snapshot(
        self, state: PortfolioState, *, strategy_id: str, broker: str, timestamp: datetime
    ) -> PnlSnapshot:
        """Return the account marked to market as a :class:`PnlSnapshot`.

        ``positions`` (keyed by ``str(token)``) lists open holdings and closed
        ones with non-zero realized P&L, so realized history stays visible.
        """
        realized = unrealized = market = _ZERO
        positions: dict[str, Position] = {}
        for token, h in state.holdings.items():  # valuation() and the positions in one pass
            quantity, last, realized_pnl = h.quantity, h.last_price, h.realized_pnl
            open_pnl = (last - h.average_price) * quantity
            realized += realized_pnl
            unrealized += open_pnl
            market += last * quantity
            if quantity != 0 or realized_pnl != 0:
                positions[str(token)] = Position(
                    quantity=quantity,
                    average_price=float(h.average_price),
                    last_price=float(last),
                    realized_pnl=float(realized_pnl),
                    unrealized_pnl=float(open_pnl),
                )
        fees = state.fees_paid
        return PnlSnapshot(
            strategy_id=strategy_id,
            broker=broker,
            cash=float(state.cash),
            positions=positions,
            realized_pnl=float(realized),
            unrealized_pnl=float(unrealized),
            total_pnl=float(realized + unrealized - fees),
            fees_paid=float(fees),
            total_value=float(state.cash + market),
            timestamp=timestamp,
        )
