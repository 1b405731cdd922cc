"""Real writes for the dashboard tests: snapshots in Redis, ledger and equity rows in
Postgres, signals, rejections and dead letters on Kafka, all built through the schemas."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import psycopg

from connectors.equity import equity_rows, write_equity
from connectors.kafka.records import produce
from connectors.postgres import ledger_batch, write_ledger
from connectors.redis_portfolio import portfolio_key, redis_client
from schemas.codec import dead_letter, encode, to_builtins
from schemas.envelope import Outbound, envelop, event_id
from schemas.events import OrderFilled, OrderSubmitted, PnlSnapshot, Position, RejectedSignal, TradingSignal
from schemas.topics import (
    ORDERS_FILLED,
    ORDERS_SUBMITTED,
    PNL_SNAPSHOTS,
    SIGNALS_RAW,
    SIGNALS_REJECTED,
    account_key,
    broker_topic,
    dlq_topic,
    signal_key,
)

T0 = datetime(2024, 1, 2, 9, 15, tzinfo=UTC)
TOKEN = 256265


def snapshot(broker: str, strategy: str, cash: float, step: int, *, quantity: int = 100) -> Outbound:
    """A P&L snapshot ``step`` seconds after T0; value and P&L follow from cash and one position."""
    last = 101.5 + step * 0.25
    unrealized = round(quantity * (last - 101.5), 6)
    snap = PnlSnapshot(
        strategy_id=strategy,
        broker=broker,
        cash=cash,
        positions={
            str(TOKEN): Position(
                quantity=quantity, average_price=101.5, last_price=last, realized_pnl=0.0,
                unrealized_pnl=unrealized,
            )
        },
        realized_pnl=0.0,
        unrealized_pnl=unrealized,
        total_pnl=round(unrealized - 10.155075, 6),
        fees_paid=10.155075,
        total_value=round(cash + quantity * last, 6),
        timestamp=T0 + timedelta(seconds=step),
    )  # fmt: skip
    envelope = envelop(
        snap, id=event_id("pnl", broker, strategy, step), ts=snap.timestamp, broker=broker,  # type: ignore[arg-type]
        cause=None, source="test", key=account_key(strategy),
    )  # fmt: skip
    return Outbound(broker_topic(broker, PNL_SNAPSHOTS), envelope.key, envelope)


def order_events(broker: str, strategy: str, n: int, *, at: datetime = T0) -> list[Outbound]:
    """Order ``n`` of ``strategy``: submitted and filled (BUY 100 @ 101.5, the DESIGN fill)."""
    order_id = f"{strategy}-o{n}"
    common: dict[str, Any] = {
        "order_id": order_id, "strategy_id": strategy, "instrument_token": TOKEN, "side": "BUY",
        "quantity": 100, "timestamp": at + timedelta(seconds=n), "broker": broker,
        "execution_mode": "paper" if broker == "paper" else "dry_run",
    }  # fmt: skip
    events = [
        (ORDERS_SUBMITTED, OrderSubmitted(**common, price=101.5, status="SUBMITTED"), "submitted"),
        (ORDERS_FILLED, OrderFilled(**common, fill_price=101.55075, fees=10.155075), "filled"),
    ]
    out = []
    for stage, data, kind in events:
        envelope = envelop(
            data, id=event_id(kind, broker, order_id), ts=common["timestamp"], broker=broker,  # type: ignore[arg-type]
            cause=None, source="test", key=account_key(strategy),
        )  # fmt: skip
        out.append(Outbound(broker_topic(broker, stage), envelope.key, envelope))
    return out


def signal(broker: str, strategy: str, n: int, side: str = "BUY") -> Any:
    """A trading signal envelope for ``strategy`` at ``broker``."""
    data = TradingSignal(
        strategy_id=strategy, instrument_token=TOKEN, signal_type=side, quantity=100,  # type: ignore[arg-type]
        price=101.5 + n, timestamp=T0 + timedelta(seconds=n), confidence=0.5,
    )  # fmt: skip
    return envelop(
        data, id=event_id("signal", broker, strategy, n), ts=data.timestamp, broker=broker,  # type: ignore[arg-type]
        cause=None, source="test", key=signal_key(strategy, TOKEN),
    )  # fmt: skip


def rejection(broker: str, strategy: str, n: int, rule: str, reason: str) -> Any:
    """A rejected signal failing ``rule`` with ``reason``."""
    original = signal(broker, strategy, n, "SELL").data
    data = RejectedSignal(
        original_signal=original, rejection_reason=reason,
        risk_checks={rule: False, "max_daily_trades": True}, timestamp=original.timestamp,
    )  # fmt: skip
    return envelop(
        data, id=event_id("rejected", broker, strategy, n), ts=data.timestamp, broker=broker,  # type: ignore[arg-type]
        cause=None, source="test", key=signal_key(strategy, TOKEN),
    )  # fmt: skip


def dead_letters(topic: str, n: int, error_type: str = "infrastructure", *, start: int = 0) -> list[bytes]:
    """``n`` dead letters of ``topic`` (values for ``<topic>.dlq``)."""
    return [
        encode(
            dead_letter(
                topic=topic, key=f"k{i}", value=b'{"x": %d}' % i, error_type=error_type,  # type: ignore[arg-type]
                error_class="ConnectionError" if error_type != "authentication" else "InvalidPassword",
                error_message="ledger_sink: unreachable", service_name="test",
                dlq_timestamp=T0, broker=topic.split(".")[0],  # type: ignore[arg-type]
            )
        )
        for i in range(start, start + n)
    ]  # fmt: skip


@dataclass
class Seeded:
    """What a test wrote, to compare the dashboard with."""

    accounts: list[tuple[str, str]]
    snapshots: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    history: dict[tuple[str, str], list[Outbound]] = field(default_factory=dict)
    fills: dict[tuple[str, str], int] = field(default_factory=dict)


def write_snapshots(redis_url: str, postgres_url: str, items: list[Outbound]) -> None:
    """The latest of ``items`` per account to Redis, all of them to ``equity_history``."""
    client = redis_client(redis_url)
    try:
        for item in items:
            snap = item.envelope.data
            client.set(portfolio_key(snap.broker, snap.strategy_id), msgspec.json.encode(snap))  # type: ignore[union-attr]
    finally:
        client.close()
    with psycopg.connect(postgres_url) as conn:
        write_equity(conn, equity_rows(items))


def write_orders(postgres_url: str, items: list[Outbound]) -> None:
    """Order events into the ledger (the sink's own statements)."""
    with psycopg.connect(postgres_url) as conn:
        write_ledger(conn, ledger_batch(items))


def seed_world(kafka: str, redis_url: str, postgres_url: str, prefix: str) -> Seeded:
    """Three accounts with snapshots, history, orders and fills; signals, rejections, dead letters."""
    accounts = [("paper", f"{prefix}mom"), ("paper", f"{prefix}mr"), ("zerodha", f"{prefix}mom")]
    seeded = Seeded(accounts)
    for index, (broker, strategy) in enumerate(accounts):
        history = [
            snapshot(broker, strategy, 989_834.769925 - 1000 * index, step) for step in range(4 + index)
        ]
        write_snapshots(redis_url, postgres_url, history)
        seeded.history[(broker, strategy)] = history
        seeded.snapshots[(broker, strategy)] = to_builtins(history[-1].envelope)["data"]
        fills = index + 1
        write_orders(postgres_url, [e for n in range(fills) for e in order_events(broker, strategy, n)])
        seeded.fills[(broker, strategy)] = fills
    for broker, strategy in accounts:
        produce(kafka, broker_topic(broker, SIGNALS_RAW),
                [(s.key, encode(s)) for s in (signal(broker, strategy, n) for n in range(3))])  # fmt: skip
    reason = "max_position_size: position 1100 would exceed 1000"
    rejected = rejection("paper", f"{prefix}mom", 7, "max_position_size", reason)
    produce(kafka, broker_topic("paper", SIGNALS_REJECTED), [(rejected.key, encode(rejected))])
    filled = broker_topic("paper", ORDERS_FILLED)
    produce(kafka, dlq_topic(filled), [(f"k{i}", v) for i, v in enumerate(dead_letters(filled, 2))])
    return seeded
