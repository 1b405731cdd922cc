"""Kite order states -> ``zerodha.orders.*`` events, once per change.

In: a :class:`~connectors.kite.protocol.KiteOrder` (from a postback or the
polled order book) and the :class:`~connectors.kite.store.OrderIntent`
its tag maps to. Out: envelopes keyed by strategy id:

- a new non-terminal state (status or filled quantity changed):
  ``order_submitted`` with Kite's status (``OPEN``...);
- ``COMPLETE``: ``order_filled`` of the filled quantity at Kite's average
  price, fees from the charges schedule;
- ``CANCELLED`` / ``REJECTED``: ``order_filled`` of whatever was filled
  (a partial fill), then ``order_failed`` of the unfilled remainder with
  Kite's status and message, so risk can release exactly that.

The ledger and the portfolio are unique per ``(broker, order_id)``, so an
order's fill is published once, when the order is final (its quantity is
then what the exchange really filled). Ids are UUIDv5s of the order and
the state, so a state seen twice (postback and poll) is one message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Final

from connectors.kite.protocol import KiteOrder
from connectors.kite.store import OrderIntent
from operators.zerodha_charges import ChargesSchedule, order_charges
from schemas.envelope import (
    ENVELOPE_OF,
    SCHEMA_VERSION,
    AnyEnvelope,
    AnyEvent,
    event_id,
)
from schemas.events import OrderFailed, OrderFilled, OrderSubmitted

BROKER: Final = "zerodha"
SOURCE: Final = "zerodha_updates"


@dataclass
class TrackerState:
    """Per tag, the last ``(status, filled_quantity)`` published; terminal tags are remembered too."""

    seen: dict[str, tuple[str, int]] = field(default_factory=dict)

    def copy(self) -> TrackerState:
        """An independent copy (values are immutable tuples)."""
        return TrackerState(dict(self.seen))


class OrderTracker:
    """Turns order states into events; see the module docstring."""

    def __init__(self, charges: ChargesSchedule, state: TrackerState | None = None) -> None:
        self._charges = charges
        self.state = state if state is not None else TrackerState()

    def on_order(self, order: KiteOrder, intent: OrderIntent, now: datetime) -> list[AnyEnvelope]:
        """The events of ``order``'s state, empty when it was published before (or regressed)."""
        previous = self.state.seen.get(intent.tag)
        current = (order.status, order.filled_quantity)
        if previous == current or (
            previous is not None and previous[0] in ("COMPLETE", "CANCELLED", "REJECTED")
        ):
            return []
        if previous is not None and order.filled_quantity < previous[1]:
            return []  # an older state delivered late (postback after a poll)
        self.state.seen[intent.tag] = current
        when = order.exchange_timestamp or order.order_timestamp or now
        if order.status == "COMPLETE":
            return self._filled(order, intent, when, now, order.filled_quantity or intent.quantity)
        if order.status in ("CANCELLED", "REJECTED"):
            out = (
                self._filled(order, intent, when, now, order.filled_quantity) if order.filled_quantity else []
            )
            return [*out, self._failed(order, intent, when, now)]
        submitted = OrderSubmitted(
            order_id=intent.order_id,
            strategy_id=intent.strategy_id,
            instrument_token=intent.instrument_token,
            side=intent.side,  # type: ignore[arg-type]
            quantity=intent.quantity,
            timestamp=when,
            broker=BROKER,
            execution_mode="live",
            price=order.average_price or order.price or (intent.price or 0.0),
            status=order.status,
        )
        ident = event_id("order_submitted", intent.order_id, order.status, order.filled_quantity)
        return [_envelope(submitted, ident, intent, now)]

    def _filled(
        self, order: KiteOrder, intent: OrderIntent, when: datetime, now: datetime, quantity: int
    ) -> list[AnyEnvelope]:
        price = Decimal(str(order.average_price))
        fees = order_charges(
            self._charges,
            product="CNC" if intent.product == "CNC" else "MIS",
            side="BUY" if intent.side == "BUY" else "SELL",
            quantity=quantity,
            price=price,
        ).total
        filled = OrderFilled(
            order_id=intent.order_id,
            strategy_id=intent.strategy_id,
            instrument_token=intent.instrument_token,
            side=intent.side,  # type: ignore[arg-type]
            quantity=quantity,
            timestamp=when,
            broker=BROKER,
            execution_mode="live",
            fill_price=float(price),
            fees=float(fees),
        )
        return [_envelope(filled, event_id("order_filled", intent.order_id), intent, now)]

    def _failed(self, order: KiteOrder, intent: OrderIntent, when: datetime, now: datetime) -> AnyEnvelope:
        unfilled = intent.quantity - order.filled_quantity
        detail = f": {order.status_message}" if order.status_message else ""
        partial = f" ({order.filled_quantity} of {intent.quantity} filled)" if order.filled_quantity else ""
        failed = OrderFailed(
            order_id=intent.order_id,
            strategy_id=intent.strategy_id,
            instrument_token=intent.instrument_token,
            side=intent.side,  # type: ignore[arg-type]
            quantity=max(unfilled, 1),
            timestamp=when,
            broker=BROKER,
            execution_mode="live",
            error_message=f"Kite order {order.order_id} {order.status}{partial}{detail}",
        )
        return _envelope(failed, event_id("order_failed", intent.order_id), intent, now)


def _envelope(data: AnyEvent, ident: str, intent: OrderIntent, ts: datetime) -> AnyEnvelope:
    """An envelope correlated with the order (no tick travels with a broker update)."""
    return ENVELOPE_OF[type(data)](  # type: ignore[return-value, call-arg]
        id=ident,
        ts=ts,
        broker=BROKER,
        correlation_id=intent.order_id,
        causation_id=None,
        source=SOURCE,
        version=SCHEMA_VERSION,
        key=intent.strategy_id,
        data=data,
    )
