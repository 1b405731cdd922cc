"""Risk rules: exact numbers, accumulated state, combined reasons."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from operators.costs import Costs
from operators.errors import ConfigError
from operators.risk import RULES, RiskConfig, RiskFilter, RiskState
from schemas.events import RejectedSignal, TradingSignal, ValidatedSignal

T0 = datetime(2024, 1, 2, 9, 15, tzinfo=UTC)
TOKEN = 256265


def signal(side: str = "BUY", quantity: int = 100, price: float = 101.5, at: datetime = T0) -> TradingSignal:
    return TradingSignal(
        strategy_id="mom1",
        instrument_token=TOKEN,
        signal_type=side,  # type: ignore[arg-type]
        quantity=quantity,
        price=price,
        timestamp=at,
        confidence=0.5,
    )


def test_a_buy_passes_every_rule_and_updates_the_account() -> None:
    risk = RiskFilter(RiskConfig())
    state = risk.new_state()
    result = risk.on_signal(state, signal())
    assert isinstance(result, ValidatedSignal)
    assert result.validated_quantity == 100
    assert result.validated_price == 101.5
    assert result.timestamp == T0
    assert result.risk_checks == dict.fromkeys(RULES, True)
    assert list(result.risk_checks) == [
        "max_position_size",
        "max_daily_trades",
        "max_price_deviation",
        "sufficient_cash",
        "no_short_selling",
    ]
    fill = Decimal("101.5") * Decimal("1.0005") * 100
    assert state.cash == Decimal(1_000_000) - fill - fill * Decimal("0.001")
    assert state.cash == Decimal("989834.769925")
    assert state.positions == {TOKEN: 100}
    assert state.trades_today == 1
    assert state.trade_date == T0.date()


def test_a_sell_credits_proceeds_after_slippage_and_commission() -> None:
    risk = RiskFilter(RiskConfig())
    state = risk.new_state()
    risk.on_signal(state, signal())
    before = state.cash
    result = risk.on_signal(state, signal("SELL", 100, 103.0))
    assert isinstance(result, ValidatedSignal)
    fill = Decimal("103") * Decimal("0.9995") * 100
    assert state.cash == before + fill - fill * Decimal("0.001")
    assert state.positions[TOKEN] == 0


def test_position_limit_trips_only_because_of_earlier_orders() -> None:
    risk = RiskFilter(RiskConfig())
    state = risk.new_state()
    for _ in range(10):
        assert isinstance(risk.on_signal(state, signal()), ValidatedSignal)
    before = state.copy()
    result = risk.on_signal(state, signal())
    assert isinstance(result, RejectedSignal)
    assert result.rejection_reason == "max_position_size: position 1100 would exceed 1000"
    assert result.risk_checks == {**dict.fromkeys(RULES, True), "max_position_size": False}
    assert result.timestamp == T0
    assert state == before


def test_daily_trade_count_resets_on_a_new_exchange_date() -> None:
    risk = RiskFilter(RiskConfig(max_daily_trades=2))
    state = risk.new_state()
    assert isinstance(risk.on_signal(state, signal(quantity=1)), ValidatedSignal)
    assert isinstance(risk.on_signal(state, signal(quantity=1)), ValidatedSignal)
    result = risk.on_signal(state, signal(quantity=1))
    assert isinstance(result, RejectedSignal)
    assert result.rejection_reason == ("max_daily_trades: trade 3 on 2024-01-02 would exceed 2")
    next_day = risk.on_signal(state, signal(quantity=1, at=T0 + timedelta(days=1)))
    assert isinstance(next_day, ValidatedSignal)
    assert state.trades_today == 1
    assert state.trade_date == (T0 + timedelta(days=1)).date()


def test_exchange_date_is_taken_in_the_timestamps_own_offset() -> None:
    ist = timezone(timedelta(hours=5, minutes=30))
    risk = RiskFilter(RiskConfig(max_daily_trades=1))
    state = risk.new_state()
    # 2024-01-02 20:00 UTC is already 2024-01-03 in India.
    late_utc = datetime(2024, 1, 2, 20, 0, tzinfo=UTC).astimezone(ist)
    assert isinstance(risk.on_signal(state, signal(quantity=1, at=T0)), ValidatedSignal)
    assert isinstance(risk.on_signal(state, signal(quantity=1, at=late_utc)), ValidatedSignal)


def test_price_deviation_against_the_latest_mark() -> None:
    risk = RiskFilter(RiskConfig())
    state = risk.new_state()
    risk.on_mark(state, TOKEN, 100.0)
    assert isinstance(risk.on_signal(state, signal(price=110.0)), ValidatedSignal)
    result = risk.on_signal(state, signal(price=111.0))
    assert isinstance(result, RejectedSignal)
    assert result.rejection_reason == (
        "max_price_deviation: price 111.0 is 11.00% from last 100.0, limit 10.00%"
    )
    assert state.last_prices == {TOKEN: (100.0, None)}  # signals do not move the mark


def test_without_a_mark_the_signal_price_is_the_latest() -> None:
    risk = RiskFilter(RiskConfig())
    state = risk.new_state()
    result = risk.on_signal(state, signal(price=5000.0))
    assert isinstance(result, ValidatedSignal)
    assert result.risk_checks["max_price_deviation"] is True
    assert state.last_prices == {}


def test_insufficient_cash() -> None:
    risk = RiskFilter(RiskConfig(starting_cash=Decimal("10000")))
    state = risk.new_state()
    result = risk.on_signal(state, signal())
    assert isinstance(result, RejectedSignal)
    # 100 * 101.5 * 1.0005 = 10155.075, plus 0.1 % = 10165.230075
    assert result.rejection_reason == "sufficient_cash: cost 10165.23 exceeds cash 10000.00"


def test_selling_more_than_held_is_rejected() -> None:
    risk = RiskFilter(RiskConfig())
    state = risk.new_state()
    risk.on_signal(state, signal(quantity=50))
    result = risk.on_signal(state, signal("SELL", 80))
    assert isinstance(result, RejectedSignal)
    assert result.rejection_reason == "no_short_selling: selling 80 exceeds position 50"
    assert result.risk_checks["sufficient_cash"] is True  # a SELL never needs cash
    assert state.positions == {TOKEN: 50}


def test_a_reason_names_each_failing_rule() -> None:
    risk = RiskFilter(RiskConfig(max_position_size=50))
    state = risk.new_state()
    risk.on_mark(state, TOKEN, 100.0)
    result = risk.on_signal(state, signal(quantity=60, price=120.0))
    assert isinstance(result, RejectedSignal)
    assert result.rejection_reason == (
        "max_position_size: position 60 would exceed 50; "
        "max_price_deviation: price 120.0 is 20.00% from last 100.0, limit 10.00%"
    )
    assert result.risk_checks == {
        "max_position_size": False,
        "max_daily_trades": True,
        "max_price_deviation": False,
        "sufficient_cash": True,
        "no_short_selling": True,
    }


def test_state_copy_does_not_alias() -> None:
    risk = RiskFilter(RiskConfig())
    state = risk.new_state()
    risk.on_mark(state, TOKEN, 101.5)
    risk.on_signal(state, signal())
    copy = state.copy()
    risk.on_mark(state, TOKEN, 102.0)
    risk.on_signal(state, signal())
    assert copy.positions == {TOKEN: 100}
    assert copy.last_prices == {TOKEN: (101.5, None)}
    assert copy.trades_today == 1
    assert isinstance(copy, RiskState)


def test_from_parameters() -> None:
    config = RiskConfig.from_parameters({"starting_cash": "250000.50", "slippage_bps": 2.5})
    assert config.starting_cash == Decimal("250000.50")
    assert config.costs == Costs(slippage_bps=Decimal("2.5"), commission_bps=Decimal(10))
    with pytest.raises(ConfigError, match="max_daily_trades.*-1"):
        RiskConfig.from_parameters({"max_daily_trades": -1})
    with pytest.raises(ConfigError, match="starting_cash.*'lots'"):
        RiskConfig.from_parameters({"starting_cash": "lots"})


def test_price_deviation_ignores_ticks_from_the_signals_future_or_stale_ones() -> None:
    from datetime import timedelta

    risk = RiskFilter(RiskConfig())
    state = risk.new_state()
    when = T0 + timedelta(seconds=10)
    risk.on_mark(state, TOKEN, 150.0, when + timedelta(seconds=1))  # from the future
    assert isinstance(risk.on_signal(state, signal("BUY", 10, 100.0, at=when)), ValidatedSignal)
    risk.on_mark(state, TOKEN, 150.0, when - timedelta(seconds=6))  # stale (> 5 s)
    assert isinstance(risk.on_signal(state, signal("BUY", 10, 100.0, at=when)), ValidatedSignal)
    risk.on_mark(state, TOKEN, 150.0, when - timedelta(seconds=2))  # current: judged
    rejected = risk.on_signal(state, signal("BUY", 10, 100.0, at=when))
    assert isinstance(rejected, RejectedSignal)
    assert rejected.rejection_reason.startswith("max_price_deviation: price 100.0 is 33.33% from last 150.0")


def test_a_failed_order_releases_what_risk_booked() -> None:
    risk = RiskFilter(RiskConfig(max_position_size=100, max_daily_trades=1))
    state = risk.new_state()
    before = state.copy()
    validated = risk.on_signal(state, signal("BUY", 100))
    assert isinstance(validated, ValidatedSignal)
    assert state.positions[256265] == 100
    risk.release(state, validated)
    assert state.positions[256265] == 0
    assert state.cash == before.cash
    assert state.trades_today == 0
    # With the booking released, the same order fits both limits again.
    assert isinstance(risk.on_signal(state, signal("BUY", 100)), ValidatedSignal)


def test_a_released_sell_gives_the_shares_back_and_takes_the_proceeds_back() -> None:
    risk = RiskFilter(RiskConfig())
    state = risk.new_state()
    risk.on_signal(state, signal("BUY", 100))
    held = state.copy()
    sold = risk.on_signal(state, signal("SELL", 60))
    assert isinstance(sold, ValidatedSignal)
    risk.release(state, sold)
    assert state.positions == held.positions
    assert state.cash == held.cash


def test_price_deviation_exactly_at_the_limit_passes() -> None:
    risk = RiskFilter(RiskConfig(max_price_deviation=0.1))
    state = risk.new_state()
    # |110.0 - 100.0| / 100.0 is 0.10000000000000009 in floats: exactly 10% in decimals.
    risk.on_mark(state, 256265, 100.0, T0)
    assert isinstance(risk.on_signal(state, signal("BUY", 1, price=110.0)), ValidatedSignal)
    risk.on_mark(state, 256265, 100.0, T0)
    assert isinstance(risk.on_signal(state, signal("BUY", 1, price=110.01)), RejectedSignal)
