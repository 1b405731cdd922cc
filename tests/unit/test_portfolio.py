"""Portfolio accounting: exact Decimal examples and consistency properties."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from operators.portfolio import Holding, Portfolio, PortfolioConfig, PortfolioState
from schemas.events import OrderFilled

T0 = datetime(2024, 1, 2, 9, 15, tzinfo=UTC)
TOKEN = 256265
START = Decimal(1_000_000)


def filled(
    order_id: str, side: str, quantity: int, price: float, fees: float, token: int = TOKEN
) -> OrderFilled:
    return OrderFilled(
        order_id=order_id,
        strategy_id="mom1",
        instrument_token=token,
        side=side,  # type: ignore[arg-type]
        quantity=quantity,
        timestamp=T0,
        broker="paper",
        execution_mode="paper",
        fill_price=price,
        fees=fees,
    )


def test_design_example_buy() -> None:
    portfolio = Portfolio(PortfolioConfig())
    state = portfolio.new_state()
    assert portfolio.on_fill(state, filled("o1", "BUY", 100, 101.55075, 10.155075))
    assert state.cash == Decimal("989834.769925")
    snap = portfolio.snapshot(state, strategy_id="mom1", broker="paper", timestamp=T0)
    assert snap.cash == pytest.approx(989834.769925, abs=1e-6)
    assert snap.positions[str(TOKEN)].quantity == 100
    assert snap.positions[str(TOKEN)].average_price == 101.55075
    assert snap.fees_paid == 10.155075
    assert snap.total_pnl == -10.155075
    assert snap.strategy_id == "mom1"
    assert snap.broker == "paper"
    assert snap.timestamp == T0
    totals = portfolio.valuation(state)
    assert totals.total_value - START == totals.total_pnl


def test_round_trip_realizes_exact_pnl() -> None:
    portfolio = Portfolio(PortfolioConfig())
    state = portfolio.new_state()
    buy_price = Decimal("101.5") * Decimal("1.0005")
    buy_fees = buy_price * 100 * Decimal("0.001")
    sell_price = Decimal("103") * Decimal("0.9995")
    sell_fees = sell_price * 100 * Decimal("0.001")
    portfolio.on_fill(state, filled("o1", "BUY", 100, float(buy_price), float(buy_fees)))
    portfolio.on_fill(state, filled("o2", "SELL", 100, float(sell_price), float(sell_fees)))
    realized = (sell_price - buy_price) * 100
    assert realized == Decimal("139.775")
    assert state.cash == START - buy_price * 100 - buy_fees + sell_price * 100 - sell_fees
    assert state.holdings[TOKEN] == Holding(0, Decimal(0), realized, sell_price)
    totals = portfolio.valuation(state)
    assert totals.realized_pnl == realized
    assert totals.unrealized_pnl == 0
    assert totals.fees_paid == buy_fees + sell_fees
    assert totals.total_pnl == realized - buy_fees - sell_fees
    assert totals.total_value - START == totals.total_pnl
    snap = portfolio.snapshot(state, strategy_id="mom1", broker="paper", timestamp=T0)
    # A closed position stays visible for its realized P&L.
    assert snap.positions[str(TOKEN)].quantity == 0
    assert snap.positions[str(TOKEN)].realized_pnl == pytest.approx(139.775)
    assert snap.realized_pnl == pytest.approx(139.775)


def test_duplicate_fills_are_ignored() -> None:
    portfolio = Portfolio(PortfolioConfig())
    state = portfolio.new_state()
    fill = filled("o1", "BUY", 100, 101.55075, 10.155075)
    assert portfolio.on_fill(state, fill) is True
    before = state.copy()
    assert portfolio.on_fill(state, fill) is False
    assert state == before


def test_weighted_average_and_partial_reduction() -> None:
    portfolio = Portfolio(PortfolioConfig())
    state = portfolio.new_state()
    portfolio.on_fill(state, filled("o1", "BUY", 100, 100.0, 0.0))
    portfolio.on_fill(state, filled("o2", "BUY", 300, 104.0, 0.0))
    assert state.holdings[TOKEN].average_price == Decimal(103)
    portfolio.on_fill(state, filled("o3", "SELL", 100, 110.0, 0.0))
    holding = state.holdings[TOKEN]
    assert holding.quantity == 300
    assert holding.average_price == Decimal(103)
    assert holding.realized_pnl == Decimal(700)


def test_crossing_through_zero_flips_to_short_at_the_fill_price() -> None:
    portfolio = Portfolio(PortfolioConfig())
    state = portfolio.new_state()
    portfolio.on_fill(state, filled("o1", "BUY", 100, 100.0, 1.0))
    portfolio.on_fill(state, filled("o2", "SELL", 150, 90.0, 1.0))
    holding = state.holdings[TOKEN]
    assert holding.quantity == -50
    assert holding.average_price == Decimal(90)
    assert holding.realized_pnl == Decimal(-1000)
    portfolio.on_mark(state, TOKEN, 80.0)
    assert holding.unrealized_pnl == Decimal(500)  # short gains as price falls
    totals = portfolio.valuation(state)
    assert totals.total_value - START == totals.total_pnl == Decimal(-1000 + 500 - 2)


def test_marks_move_unrealized_only_for_held_instruments() -> None:
    portfolio = Portfolio(PortfolioConfig())
    state = portfolio.new_state()
    assert portfolio.on_mark(state, TOKEN, 100.0) is False
    portfolio.on_fill(state, filled("o1", "BUY", 10, 100.0, 0.0))
    assert portfolio.on_mark(state, TOKEN, 105.5) is True
    assert portfolio.on_mark(state, 1, 5.0) is False
    snap = portfolio.snapshot(state, strategy_id="s", broker="paper", timestamp=T0)
    assert snap.unrealized_pnl == 55.0
    assert snap.positions[str(TOKEN)].last_price == 105.5
    assert snap.total_value == 1_000_055.0
    portfolio.on_fill(state, filled("o2", "SELL", 10, 100.0, 0.0))
    assert portfolio.on_mark(state, TOKEN, 120.0) is False  # closed: nothing to mark


def test_state_copy_does_not_alias() -> None:
    portfolio = Portfolio(PortfolioConfig())
    state = portfolio.new_state()
    portfolio.on_fill(state, filled("o1", "BUY", 10, 100.0, 1.0))
    copy = state.copy()
    portfolio.on_fill(state, filled("o2", "BUY", 10, 110.0, 1.0))
    portfolio.on_mark(state, TOKEN, 120.0)
    assert copy.holdings[TOKEN] == Holding(10, Decimal(100), Decimal(0), Decimal(100))
    assert "o1" in copy.applied_orders
    assert len(copy.applied_orders) == 1
    assert copy.cash == START - 1001


fills = st.lists(
    st.tuples(
        st.sampled_from(["BUY", "SELL"]),
        st.integers(min_value=1, max_value=500),
        st.floats(min_value=0.01, max_value=10_000, allow_nan=False, allow_infinity=False),
        st.floats(min_value=0, max_value=100, allow_nan=False, allow_infinity=False),
        st.sampled_from([1, 2, 3]),
        st.one_of(st.none(), st.floats(min_value=0.01, max_value=10_000)),
    ),
    max_size=40,
)


@given(fills)
def test_cash_and_positions_stay_consistent(
    sequence: list[tuple[str, int, float, float, int, float | None]],
) -> None:
    portfolio = Portfolio(PortfolioConfig())
    state = portfolio.new_state()
    quantities: dict[int, int] = {}
    for i, (side, quantity, price, fees, token, mark) in enumerate(sequence):
        portfolio.on_fill(state, filled(f"o{i}", side, quantity, price, fees, token))
        quantities[token] = quantities.get(token, 0) + (quantity if side == "BUY" else -quantity)
        if mark is not None:
            portfolio.on_mark(state, token, mark)
        before = state.copy()
        portfolio.on_fill(state, filled(f"o{i}", side, quantity, price, fees, token))
        assert state == before  # redelivery is a no-op
        totals = portfolio.valuation(state)
        assert abs(totals.total_value - START - totals.total_pnl) <= Decimal("1e-6")
    assert {t: h.quantity for t, h in state.holdings.items()} == quantities
    snap = portfolio.snapshot(state, strategy_id="s", broker="paper", timestamp=T0)
    assert snap.total_value - 1_000_000 == pytest.approx(snap.total_pnl, abs=1e-3)


@given(fills)
def test_copy_never_aliases(sequence: list[tuple[str, int, float, float, int, float | None]]) -> None:
    portfolio = Portfolio(PortfolioConfig())
    state = portfolio.new_state()
    snapshots: list[tuple[PortfolioState, PortfolioState]] = []
    for i, (side, quantity, price, fees, token, mark) in enumerate(sequence):
        copy = state.copy()
        frozen = state.copy()
        snapshots.append((copy, frozen))
        portfolio.on_fill(state, filled(f"o{i}", side, quantity, price, fees, token))
        if mark is not None:
            portfolio.on_mark(state, token, mark)
    for copy, frozen in snapshots:
        assert copy == frozen
        assert copy.holdings is not state.holdings
        assert all(copy.holdings[t] is not state.holdings.get(t) for t in copy.holdings)


def test_a_new_position_is_marked_to_the_latest_tick_not_its_fill() -> None:
    portfolio = Portfolio(PortfolioConfig())
    state = portfolio.new_state()
    assert portfolio.on_mark(state, TOKEN, 101.5) is False  # not held yet, but remembered
    portfolio.on_fill(state, filled("o1", "BUY", 100, 101.55075, 10.155075))
    snap = portfolio.snapshot(state, strategy_id="s", broker="paper", timestamp=T0)
    assert snap.positions[str(TOKEN)].last_price == 101.5
    assert snap.unrealized_pnl == pytest.approx(-5.075, abs=1e-9)
    assert snap.total_value == pytest.approx(989834.769925 + 10150.0, abs=1e-6)
    assert snap.total_pnl == pytest.approx(-5.075 - 10.155075, abs=1e-9)


def test_without_a_mark_a_position_is_marked_at_its_fill() -> None:
    portfolio = Portfolio(PortfolioConfig())
    state = portfolio.new_state()
    portfolio.on_fill(state, filled("o1", "BUY", 100, 101.55075, 10.155075))
    snap = portfolio.snapshot(state, strategy_id="s", broker="paper", timestamp=T0)
    assert snap.positions[str(TOKEN)].last_price == 101.55075
    assert snap.unrealized_pnl == 0.0


def test_a_closed_position_keeps_its_exit_price_whatever_marks_arrived() -> None:
    portfolio = Portfolio(PortfolioConfig())
    early, late = portfolio.new_state(), portfolio.new_state()
    portfolio.on_fill(early, filled("o1", "BUY", 10, 100.0, 0.0))
    portfolio.on_fill(late, filled("o1", "BUY", 10, 100.0, 0.0))
    portfolio.on_mark(late, TOKEN, 130.0)  # a later tick arrived before the closing fill
    portfolio.on_fill(early, filled("o2", "SELL", 10, 110.0, 0.0))
    portfolio.on_fill(late, filled("o2", "SELL", 10, 110.0, 0.0))
    portfolio.on_mark(early, TOKEN, 130.0)
    one = portfolio.snapshot(early, strategy_id="s", broker="paper", timestamp=T0)
    two = portfolio.snapshot(late, strategy_id="s", broker="paper", timestamp=T0)
    assert one == two
    assert one.positions[str(TOKEN)].last_price == 110.0
