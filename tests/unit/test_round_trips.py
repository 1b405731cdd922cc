"""Round trips from fills: hand-computed cycles, scaling in and out, crossing zero, duplicates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from operators.round_trips import OpenCycle, RoundTrip, round_trips
from schemas.events import OrderFilled

T0 = datetime(2024, 1, 2, 3, 45, tzinfo=UTC)


def fill(
    order_id: str,
    side: str,
    quantity: int,
    price: float,
    fees: float,
    seconds: float,
    *,
    token: int = 256265,
    strategy_id: str = "mom",
    broker: str = "paper",
) -> OrderFilled:
    return OrderFilled(
        order_id=order_id,
        strategy_id=strategy_id,
        instrument_token=token,
        side=side,  # type: ignore[arg-type]
        quantity=quantity,
        timestamp=T0 + timedelta(seconds=seconds),
        broker=broker,
        execution_mode="paper",
        fill_price=price,
        fees=fees,
    )


def test_one_long_round_trip() -> None:
    fills = [fill("a", "BUY", 100, 10.0, 1.0, 0), fill("b", "SELL", 100, 12.0, 1.2, 30)]
    closed, still_open = round_trips(fills)
    assert closed == [
        RoundTrip(
            broker="paper",
            strategy_id="mom",
            instrument_token=256265,
            direction="LONG",
            quantity=100,
            entry_time=T0,
            exit_time=T0 + timedelta(seconds=30),
            entry_price=Decimal(10),
            exit_price=Decimal(12),
            gross_pnl=Decimal(200),
            fees=Decimal("2.2"),
            fills=2,
        )
    ]
    assert closed[0].net_pnl == Decimal("197.8")
    assert closed[0].holding_seconds == 30.0
    assert still_open == []


def test_scaling_in_and_out_is_one_round_trip_at_mean_prices() -> None:
    fills = [
        fill("a", "BUY", 100, 10.0, 1.0, 0),
        fill("b", "BUY", 100, 11.0, 1.0, 5),
        fill("c", "SELL", 50, 12.0, 0.5, 10),
        fill("d", "SELL", 150, 9.0, 1.5, 20),
    ]
    (trip,), still_open = round_trips(fills)
    # opened 200 for 2,100 (mean 10.5); closed 200 for 600 + 1,350 = 1,950 (mean 9.75)
    assert (trip.quantity, trip.entry_price, trip.exit_price) == (200, Decimal("10.5"), Decimal("9.75"))
    assert (trip.gross_pnl, trip.fees, trip.net_pnl) == (Decimal(-150), Decimal(4), Decimal(-154))
    assert (trip.fills, trip.holding_seconds) == (4, 20.0)
    assert still_open == []


def test_a_fill_crossing_zero_closes_one_cycle_and_opens_the_other_side() -> None:
    fills = [
        fill("a", "BUY", 100, 10.0, 1.0, 0),
        fill("b", "SELL", 150, 12.0, 3.0, 10),  # 100 close the long (fees 2), 50 open a short (fees 1)
        fill("c", "BUY", 50, 11.0, 0.5, 40),
    ]
    long_trip, short_trip = round_trips(fills)[0]
    assert (long_trip.direction, long_trip.quantity, long_trip.gross_pnl, long_trip.fees) == (
        "LONG",
        100,
        Decimal(200),
        Decimal(3),
    )
    assert long_trip.net_pnl == Decimal(197)
    assert (short_trip.direction, short_trip.quantity, short_trip.entry_price, short_trip.exit_price) == (
        "SHORT",
        50,
        Decimal(12),
        Decimal(11),
    )
    assert (short_trip.gross_pnl, short_trip.fees, short_trip.net_pnl) == (
        Decimal(50),
        Decimal("1.5"),
        Decimal("48.5"),
    )
    assert (short_trip.entry_time, short_trip.holding_seconds) == (T0 + timedelta(seconds=10), 30.0)


def test_open_positions_duplicates_and_separate_accounts() -> None:
    fills = [
        fill("a", "BUY", 100, 10.0, 1.0, 0),
        fill("a", "BUY", 100, 10.0, 1.0, 0),  # redelivered: counted once
        fill("b", "BUY", 50, 13.0, 0.65, 1),
        fill("a", "BUY", 10, 20.0, 0.2, 2, broker="zerodha"),  # same order id at another broker
        fill("c", "SELL", 10, 21.0, 0.2, 3, broker="zerodha"),
        fill("d", "BUY", 5, 7.0, 0.0, 4, token=738561, strategy_id="other"),
    ]
    closed, still_open = round_trips(fills)
    assert [(t.broker, t.gross_pnl, t.fees) for t in closed] == [("zerodha", Decimal(10), Decimal("0.4"))]
    assert still_open == [
        OpenCycle("paper", "mom", 256265, 150, T0, Decimal(11), Decimal("1.65")),
        OpenCycle("paper", "other", 738561, 5, T0 + timedelta(seconds=4), Decimal(7), Decimal(0)),
    ]
