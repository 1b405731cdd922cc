"""Performance statistics on small hand-computed cases (operators.performance)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from operators.performance import (
    Drawdown,
    EquityPoint,
    Window,
    book_points,
    choose_interval,
    drawdowns,
    equity_from_fills,
    evaluate,
    exposure,
    fees_paid,
    in_window,
    interval_returns,
    max_drawdown,
    return_stats,
    sampled_equity,
    starting_equity,
    trade_stats,
)
from operators.round_trips import round_trips
from schemas.events import PnlSnapshot
from tests.unit.test_round_trips import fill

T0 = datetime(2024, 1, 2, 3, 45, tzinfo=UTC)
SECOND = timedelta(seconds=1)
PER_YEAR = 31_557_600  # 365.25 days of 1 s intervals


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def point(seconds: float, value: float) -> EquityPoint:
    return EquityPoint(at(seconds), value)


# 1,000 then 1,500 / 750 / 1,500 / 1,125: per-second returns +50 %, -50 %, +100 %, -25 %, all exact.
CURVE = [point(0.5, 1500.0), point(2.0, 750.0), point(2.5, 1500.0), point(4.0, 1125.0)]
WINDOW = Window(at(0.5), at(4.0))


def test_equity_is_sampled_on_a_grid_aligned_to_the_interval() -> None:
    # grid 03:45:00 (the start rounded down, valued at the starting equity), then :01 .. :04
    assert sampled_equity(1000.0, CURVE, WINDOW, SECOND) == [1000.0, 1500.0, 750.0, 1500.0, 1125.0]
    assert interval_returns([1000.0, 1500.0, 750.0, 1500.0, 1125.0]) == [0.5, -0.5, 1.0, -0.25]
    # a 2 s grid sees 1,000 -> 750 (at :02) -> 1,125 (at :04)
    assert sampled_equity(1000.0, CURVE, WINDOW, 2 * SECOND) == [1000.0, 750.0, 1125.0]


def test_return_statistics_by_hand() -> None:
    stats = return_stats([1000.0, 1500.0, 750.0, 1500.0, 1125.0], SECOND)
    # mean 0.1875; deviations .3125 -.6875 .8125 -.4375 -> squares sum 1.421875, sample var / 3
    # downside: (0.25 + 0.0625) / 4 = 0.078125
    assert (stats.total_return, stats.intervals, stats.mean_return) == (0.125, 4, 0.1875)
    assert stats.volatility == pytest.approx(math.sqrt(1.421875 / 3) * math.sqrt(PER_YEAR), rel=1e-12)
    assert stats.volatility == pytest.approx(3867.4264698892, rel=1e-12)
    assert stats.sharpe == pytest.approx(0.1875 / math.sqrt(1.421875 / 3) * math.sqrt(PER_YEAR), rel=1e-12)
    assert stats.sharpe == pytest.approx(1529.9709111650, rel=1e-12)
    assert stats.sortino == pytest.approx(0.1875 / math.sqrt(0.078125) * math.sqrt(PER_YEAR), rel=1e-12)
    assert stats.sortino == pytest.approx(3768.4108056315, rel=1e-12)


def test_ratios_without_spread_or_losses_are_none() -> None:
    flat = return_stats([100.0, 100.0, 100.0], SECOND)
    assert (flat.total_return, flat.volatility, flat.sharpe, flat.sortino) == (0.0, 0.0, None, None)
    rising = return_stats([100.0, 125.0, 150.0], SECOND)  # +25 %, +20 %: no downside
    assert rising.sortino is None
    assert rising.sharpe == pytest.approx(0.225 / math.sqrt(0.00125) * math.sqrt(PER_YEAR), rel=1e-12)
    single = return_stats([100.0, 150.0], timedelta(days=1))
    assert (single.total_return, single.intervals, single.volatility, single.sharpe) == (0.5, 1, None, None)


def test_max_drawdown_and_its_duration_to_recovery() -> None:
    assert drawdowns(1000.0, CURVE) == [0.0, -0.5, 0.0, -0.25]
    assert max_drawdown(1000.0, CURVE, WINDOW) == Drawdown(
        depth=0.5,
        amount=750.0,
        peak_time=at(0.5),
        trough_time=at(2.0),
        recovery_time=at(2.5),
        duration_seconds=2.0,
    )


def test_an_unrecovered_drawdown_lasts_to_the_end_of_the_window() -> None:
    curve = [point(1, 120.0), point(3, 90.0), point(5, 110.0)]
    assert max_drawdown(100.0, curve, Window(at(0), at(10))) == Drawdown(0.25, 30.0, at(1), at(3), None, 9.0)
    rising = max_drawdown(100.0, [point(1, 101.0)], Window(at(0), at(1)))
    assert rising == Drawdown(0.0, 0.0, None, None, None, 0.0)


def test_interval_choice_keeps_at_most_500_intervals() -> None:
    assert choose_interval(Window(at(0.5), at(150))) == SECOND
    assert choose_interval(Window(at(0), at(500))) == SECOND
    assert choose_interval(Window(at(0), at(501))) == 5 * SECOND
    assert choose_interval(Window(at(0), at(86_400))) == timedelta(minutes=5)
    assert choose_interval(Window(at(0), at(86_400 * 400))) == timedelta(days=1)


def test_trade_statistics_by_hand() -> None:
    fills = [  # five round trips of one share; nets 30, -10, 20, -20, 0 (no fees)
        fill("a1", "BUY", 1, 100.0, 0.0, 0),
        fill("a2", "SELL", 1, 130.0, 0.0, 10),
        fill("b1", "BUY", 1, 100.0, 0.0, 20),
        fill("b2", "SELL", 1, 90.0, 0.0, 40),
        fill("c1", "BUY", 1, 100.0, 0.0, 50),
        fill("c2", "SELL", 1, 120.0, 0.0, 80),
        fill("d1", "BUY", 1, 100.0, 0.0, 90),
        fill("d2", "SELL", 1, 80.0, 0.0, 130),
        fill("e1", "BUY", 1, 100.0, 0.0, 140),
        fill("e2", "SELL", 1, 100.0, 0.0, 150),
    ]
    trips, _ = round_trips(fills)
    stats = trade_stats(trips)
    assert (stats.trades, stats.wins, stats.losses, stats.win_rate) == (5, 2, 2, 0.4)
    assert stats.profit_factor == 50 / 30
    assert (stats.expectancy, stats.net_pnl) == (Decimal(4), Decimal(20))
    assert stats.average_holding_seconds == (10 + 20 + 30 + 40 + 10) / 5
    empty = trade_stats([])
    assert (empty.trades, empty.win_rate, empty.profit_factor, empty.expectancy) == (0, None, None, None)
    assert trade_stats(trips[:1]).profit_factor is None  # no losses


def test_exposure_counts_time_with_any_position_open() -> None:
    window = Window(at(0), at(10))
    fills = [
        fill("a", "BUY", 10, 1.0, 0.0, 2),
        fill("b", "SELL", 10, 1.0, 0.0, 5),
        fill("c", "BUY", 10, 1.0, 0.0, 8, token=738561),
    ]
    assert exposure(fills, window) == 0.5  # held 2-5 and 8-10
    before = [fill("x", "BUY", 10, 1.0, 0.0, -5), fill("y", "SELL", 10, 1.0, 0.0, 4)]
    assert exposure(before, window) == 0.4  # already held at the start, until 4
    overlap = [  # two accounts: the book is exposed while either holds
        fill("a", "BUY", 1, 1.0, 0.0, 1),
        fill("b", "BUY", 1, 1.0, 0.0, 3, strategy_id="other"),
        fill("c", "SELL", 1, 1.0, 0.0, 4),
        fill("d", "SELL", 1, 1.0, 0.0, 6, strategy_id="other"),
    ]
    assert exposure(overlap, window) == 0.5
    assert exposure(fills, Window(at(3), at(3))) == 0.0


def test_fees_inside_the_window_once_per_order() -> None:
    fills = [
        fill("a", "BUY", 1, 1.0, 0.1, -1),
        fill("b", "BUY", 1, 1.0, 0.2, 1),
        fill("b", "BUY", 1, 1.0, 0.2, 1),
        fill("c", "SELL", 2, 1.0, 0.3, 10),
    ]
    assert fees_paid(fills, Window(at(0), at(10))) == Decimal("0.5")


def test_book_is_the_sum_of_account_step_functions() -> None:
    a = (100.0, [point(1, 110.0), point(3, 90.0)])
    b = (200.0, [point(1, 210.0), point(2, 190.0)])
    initial, curve = book_points([a, b])
    assert initial == 300.0
    assert curve == [point(1, 320.0), point(2, 300.0), point(3, 280.0)]


def test_window_keeps_the_value_before_its_start() -> None:
    points = [point(1, 110.0), point(3, 90.0), point(5, 95.0)]
    assert in_window(points, 100.0, Window(at(2), at(4))) == (110.0, [point(3, 90.0)])
    assert in_window(points, 100.0, Window(at(0), at(1))) == (100.0, [point(1, 110.0)])


def test_equity_from_fills_follows_the_design_example() -> None:
    # DESIGN: BUY 100 @ 101.5 fills at 101.55075 with fees 10.155075, leaving cash 989,834.769925
    fills = [
        fill("a", "BUY", 100, 101.55075, 10.155075, 0),
        fill("a", "BUY", 100, 101.55075, 10.155075, 0),
        fill("b", "SELL", 100, 102.0, 10.2, 60),
    ]
    assert equity_from_fills(fills, Decimal(1_000_000)) == [
        point(0, 999_989.844925),  # cash + 100 x 101.55075: only the fees are gone
        point(60, 1_000_024.569925),  # flat: 989,834.769925 + 10,200 - 10.2
    ]


def test_starting_equity_is_total_value_minus_total_pnl() -> None:
    snapshot = PnlSnapshot(
        strategy_id="mom",
        broker="paper",
        cash=807_606.7464475,
        positions={},
        realized_pnl=0.0,
        unrealized_pnl=-96.0525,
        total_pnl=-288.2535525,
        fees_paid=192.2010525,
        total_value=999_711.7464475,
        timestamp=T0,
    )
    assert starting_equity(snapshot) == 1_000_000.0


def test_evaluate_puts_it_together() -> None:
    fills = [fill("a", "BUY", 10, 100.0, 1.0, 0.5), fill("b", "SELL", 10, 75.0, 1.0, 2.0)]
    trips, _ = round_trips(fills)
    perf = evaluate(1000.0, CURVE, fills, trips, WINDOW, SECOND)
    assert (perf.initial, perf.final, perf.fees_paid) == (1000.0, 1125.0, Decimal(2))
    assert perf.returns.total_return == 0.125
    assert perf.drawdown.depth == 0.5
    assert (perf.trades.trades, perf.trades.net_pnl) == (1, Decimal(-252))
    assert perf.exposure == 1.5 / 3.5
