"""Later reports of live orders in the trading shard: real fills move the books, failures release risk."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from operators.execution import SimulatedExecution, order_id_of
from operators.fills import FillConfig, FillSimulator
from operators.portfolio import Portfolio, PortfolioConfig
from operators.risk import RiskConfig, RiskFilter
from operators.shard import ShardConfig, TradingShard
from operators.strategy import StrategyConfig
from schemas.codec import decode_tick_batch
from schemas.envelope import (
    SCHEMA_VERSION,
    FailedEnvelope,
    FilledEnvelope,
    Outbound,
    SubmittedEnvelope,
    ValidatedEnvelope,
    event_id,
)
from tests.flows.conftest import tick_line
from tests.order_updates import kite_failed, kite_filled

TOKEN = 256265
MOMENTUM = StrategyConfig(
    "mom",
    "momentum",
    (TOKEN,),
    (("lookback_period", 2), ("momentum_threshold", 0.01), ("position_size", 10)),
    zerodha_trading_enabled=True,
)
T0 = datetime(2024, 1, 2, 3, 45, tzinfo=UTC)
RISE = [(100.0, 0), (102.0, 1)]
SECOND_RISE = [(102.0, 2), (104.0, 3)]


def _clock(at: datetime) -> datetime:
    return at


class LiveOrders:
    """A live route's execution: every order is accepted and stays OPEN (the fill comes later)."""

    def __init__(self) -> None:
        self.placed: list[ValidatedEnvelope] = []
        self._simulator = FillSimulator(FillConfig())

    def __call__(self, validated: ValidatedEnvelope) -> list[Any]:
        self.placed.append(validated)
        order_id = order_id_of(validated)
        submitted = self._simulator.submitted(
            order_id, validated.data, broker="zerodha", execution_mode="live", status="OPEN"
        )
        return [
            SubmittedEnvelope(
                id=event_id("order_submitted", order_id),
                ts=validated.data.timestamp,
                broker="zerodha",
                correlation_id=validated.correlation_id,
                causation_id=validated.id,
                source="t",
                version=SCHEMA_VERSION,
                key=validated.key,
                data=submitted,
            )
        ]


def live_shard(orders: LiveOrders) -> TradingShard:
    return TradingShard(
        [MOMENTUM],
        ShardConfig(brokers=("zerodha",), snapshot_interval=timedelta(seconds=10), service="t"),
        RiskFilter(RiskConfig(max_position_size=10)),
        Portfolio(PortfolioConfig(starting_cash=1_000_000)),
        orders,
        _clock,
    )


def ticks(logic: TradingShard, prices: list[tuple[float, int]]) -> list[Outbound]:
    batch = decode_tick_batch([tick_line(TOKEN, price, second) for price, second in prices])
    return logic.on_batch(batch.ticks, batch.times)


def filled(order_id: str, quantity: int, price: float, fees: float, strategy: str = "mom") -> FilledEnvelope:
    return kite_filled(order_id, strategy, TOKEN, quantity, price, fees, T0)


def failed(order_id: str, quantity: int) -> FailedEnvelope:
    return kite_failed(order_id, "mom", TOKEN, quantity, T0, "Kite order 1 REJECTED")


def test_a_live_order_moves_the_books_only_when_its_real_fill_arrives() -> None:
    orders = LiveOrders()
    logic = live_shard(orders)
    out = ticks(logic, RISE)
    assert [m.topic for m in out] == [
        "zerodha.signals.raw",
        "zerodha.signals.validated",
        "zerodha.orders.submitted",
    ]
    assert logic.flush() == []  # placed, not filled: nothing to snapshot
    [order] = orders.placed
    fill = filled(order_id_of(order), 10, 102.5, 6.31)

    assert logic.on_order_update(fill) == []  # nothing republished: the fill is on its topic already
    [snapshot] = logic.flush()
    data = snapshot.envelope.data
    assert (snapshot.topic, data.strategy_id, data.broker) == ("zerodha.pnl.snapshots", "mom", "zerodha")
    assert data.positions[str(TOKEN)].quantity == 10
    assert data.positions[str(TOKEN)].average_price == 102.5
    assert data.positions[str(TOKEN)].last_price == 102.0  # marked at the latest tick
    assert data.cash == 1_000_000 - 1025 - 6.31
    assert (snapshot.envelope.causation_id, snapshot.envelope.correlation_id) == (
        fill.id,
        fill.correlation_id,
    )
    assert logic.on_order_update(fill) == []  # a redelivered fill changes nothing
    assert logic.flush() == []


def test_a_rejected_order_releases_risk_so_the_same_signal_is_validated_again() -> None:
    orders = LiveOrders()
    logic = live_shard(orders)
    ticks(logic, RISE)
    [first] = orders.placed
    account = logic.state.accounts["zerodha:mom"]
    assert account.risk.positions[TOKEN] == 10
    assert logic.on_order_update(failed(order_id_of(first), 10)) == []
    assert (account.risk.positions[TOKEN], account.risk.trades_today) == (0, 0)
    assert logic.on_order_update(failed(order_id_of(first), 10)) == []  # redelivered: released once
    assert account.risk.positions[TOKEN] == 0

    again = ticks(logic, SECOND_RISE)
    assert [m.topic for m in again] == [
        "zerodha.signals.raw",
        "zerodha.signals.validated",
        "zerodha.orders.submitted",
    ]
    assert len(orders.placed) == 2


def test_without_the_failure_the_same_signal_exceeds_the_position_limit() -> None:
    orders = LiveOrders()
    logic = live_shard(orders)
    ticks(logic, RISE)
    rejected = [m.envelope.data for m in ticks(logic, SECOND_RISE) if m.topic == "zerodha.signals.rejected"]
    assert [r.rejection_reason for r in rejected] == ["max_position_size: position 20 would exceed 10"]


def test_a_cancelled_rest_releases_only_the_unfilled_shares() -> None:
    orders = LiveOrders()
    logic = live_shard(orders)
    ticks(logic, RISE)
    order_id = order_id_of(orders.placed[0])
    logic.on_order_update(filled(order_id, 4, 102.0, 1.0))
    logic.on_order_update(failed(order_id, 6))
    account = logic.state.accounts["zerodha:mom"]
    # Four shares traded: they stay booked, and so does the day's trade.
    assert (account.risk.positions[TOKEN], account.risk.trades_today) == (4, 1)
    assert account.books.holdings[TOKEN].quantity == 4


def test_an_update_for_an_account_the_flow_does_not_have_is_dead_lettered() -> None:
    logic = live_shard(LiveOrders())
    [letter] = logic.on_order_update(filled("order-x", 10, 100.0, 1.0, strategy="stranger"))
    info = letter.envelope.data.failure_info
    assert letter.topic == "zerodha.orders.filled.dlq"
    assert (info.error_type, info.error_class) == ("business", "UnknownAccountError")
    assert info.error_message == (
        "order update order-x: no zerodha account for strategy 'stranger' in this flow; not applied"
    )
    assert letter.envelope.data.dlq_metadata.original_topic == "zerodha.orders.filled"


def test_simulated_orders_book_nothing_for_later() -> None:
    simulated = SimulatedExecution(FillSimulator(FillConfig()), _clock, "t")
    logic = TradingShard(
        [MOMENTUM],
        ShardConfig(brokers=("paper",), service="t"),
        RiskFilter(RiskConfig()),
        Portfolio(PortfolioConfig()),
        lambda validated: simulated.execute(validated, "paper"),  # type: ignore[arg-type, return-value]
        _clock,
    )
    out = ticks(logic, RISE)
    assert "paper.orders.filled" in [m.topic for m in out]
    assert logic.state.accounts["paper:mom"].risk.booked == {}
