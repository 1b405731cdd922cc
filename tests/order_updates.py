"""Kite's later reports on a live Zerodha order, as ``dataflows.zerodha_updates`` publishes them."""

from __future__ import annotations

from datetime import datetime

from schemas.envelope import SCHEMA_VERSION, FailedEnvelope, FilledEnvelope, event_id
from schemas.events import OrderFailed, OrderFilled


def kite_filled(
    order_id: str, strategy: str, token: int, quantity: int, price: float, fees: float, at: datetime
) -> FilledEnvelope:
    """A BUY fill of ``quantity`` at ``price`` on ``zerodha.orders.filled``."""
    data = OrderFilled(order_id, strategy, token, "BUY", quantity, at, "zerodha", "live", price, fees)
    return FilledEnvelope(
        id=event_id("order_filled", order_id),
        ts=at,
        broker="zerodha",
        correlation_id=order_id,
        causation_id=None,
        source="zerodha_updates",
        version=SCHEMA_VERSION,
        key=strategy,
        data=data,
    )


def kite_failed(
    order_id: str, strategy: str, token: int, quantity: int, at: datetime, reason: str
) -> FailedEnvelope:
    """A BUY of ``quantity`` that failed (rejected, cancelled) on ``zerodha.orders.failed``."""
    data = OrderFailed(order_id, strategy, token, "BUY", quantity, at, "zerodha", "live", reason)
    return FailedEnvelope(
        id=event_id("order_failed", order_id),
        ts=at,
        broker="zerodha",
        correlation_id=order_id,
        causation_id=None,
        source="zerodha_updates",
        version=SCHEMA_VERSION,
        key=strategy,
        data=data,
    )
