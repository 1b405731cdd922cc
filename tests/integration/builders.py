"""Envelopes and Outbound items for the integration tests, built through the schemas."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from schemas.envelope import AnyEnvelope, Outbound, envelop, event_id
from schemas.events import (
    MarketTick,
    OrderFailed,
    OrderFilled,
    OrderSubmitted,
    PnlSnapshot,
    Position,
)
from schemas.topics import (
    MARKET_TICKS,
    ORDERS_FAILED,
    ORDERS_FILLED,
    ORDERS_SUBMITTED,
    PNL_SNAPSHOTS,
    BrokerName,
    account_key,
    broker_topic,
    tick_key,
)

T0 = datetime(2024, 1, 2, 9, 15, tzinfo=UTC)


def tick(token: int, price: float, seconds: int = 0) -> AnyEnvelope:
    data = MarketTick(instrument_token=token, last_price=price, timestamp=T0 + timedelta(seconds=seconds))
    ident = event_id("market_tick", token, seconds, price)
    return envelop(
        data, id=ident, ts=data.timestamp, broker="shared", cause=None, source="test", key=tick_key(token)
    )


def tick_out(token: int, price: float, seconds: int = 0) -> Outbound:
    envelope = tick(token, price, seconds)
    return Outbound(MARKET_TICKS, envelope.key, envelope)


def pnl_out(broker: BrokerName, strategy_id: str, cash: float, seconds: int = 0) -> Outbound:
    snapshot = PnlSnapshot(
        strategy_id=strategy_id,
        broker=broker,
        cash=cash,
        positions={
            "256265": Position(
                quantity=100, average_price=101.5, last_price=102.0, realized_pnl=0.0, unrealized_pnl=50.0
            )
        },
        realized_pnl=0.0,
        unrealized_pnl=50.0,
        total_pnl=50.0,
        fees_paid=10.155075,
        total_value=cash + 10_200.0,
        timestamp=T0 + timedelta(seconds=seconds),
    )
    cause = tick(256265, 102.0, seconds)
    envelope = envelop(
        snapshot,
        id=event_id("pnl", broker, strategy_id, seconds, cash),
        ts=snapshot.timestamp,
        broker=broker,
        cause=cause,
        source="portfolio_manager",
        key=account_key(strategy_id),
    )
    return Outbound(broker_topic(broker, PNL_SNAPSHOTS), envelope.key, envelope)


def _order_fields(broker: BrokerName, strategy_id: str, order_id: str) -> dict:
    return {
        "order_id": order_id,
        "strategy_id": strategy_id,
        "instrument_token": 256265,
        "side": "BUY",
        "quantity": 100,
        "timestamp": T0,
        "broker": broker,
        "execution_mode": "paper" if broker == "paper" else "dry_run",
    }


def _out(broker: BrokerName, stage: str, data: object, kind: str) -> Outbound:
    cause = tick(256265, 101.5)
    envelope = envelop(
        data,
        id=event_id(kind, broker, data.order_id),
        ts=T0,
        broker=broker,  # type: ignore[attr-defined]
        cause=cause,
        source="trading_engine",
        key=account_key(data.strategy_id),
    )  # type: ignore[attr-defined]
    return Outbound(broker_topic(broker, stage), envelope.key, envelope)


def submitted_out(broker: BrokerName, strategy_id: str, order_id: str, status: str = "SUBMITTED") -> Outbound:
    data = OrderSubmitted(**_order_fields(broker, strategy_id, order_id), price=101.5, status=status)
    return _out(broker, ORDERS_SUBMITTED, data, "order_submitted")


def filled_out(broker: BrokerName, strategy_id: str, order_id: str) -> Outbound:
    data = OrderFilled(**_order_fields(broker, strategy_id, order_id), fill_price=101.55075, fees=10.155075)
    return _out(broker, ORDERS_FILLED, data, "order_filled")


def failed_out(broker: BrokerName, strategy_id: str, order_id: str) -> Outbound:
    data = OrderFailed(**_order_fields(broker, strategy_id, order_id), error_message="insufficient margin")
    return _out(broker, ORDERS_FAILED, data, "order_failed")
