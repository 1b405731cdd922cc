"""Mean reversion: expected values are computed here from first principles."""

from __future__ import annotations

import math
import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from operators.decision import Decision
from operators.errors import ConfigError
from operators.mean_reversion import MeanReversion, MeanReversionConfig, rsi


def run(strategy: MeanReversion, prices: list[float]) -> list[tuple[int, Decision]]:
    state = strategy.new_state()
    out = []
    for i, price in enumerate(prices):
        decision = strategy.on_price(state, price)
        if decision is not None:
            out.append((i, decision))
    return out


def expected_rsi(prices: list[float]) -> float:
    changes = [b - a for a, b in zip(prices, prices[1:], strict=False)]
    avg_gain = sum(max(c, 0.0) for c in changes) / len(changes)
    avg_loss = sum(max(-c, 0.0) for c in changes) / len(changes)
    if avg_loss == 0:
        return 100.0
    return 100 - 100 / (1 + avg_gain / avg_loss)


SMALL = MeanReversionConfig(lookback_period=5, std_multiplier=1.0, rsi_period=4)
"""Warm-up max(5, 4 + 1) = 5 prices."""


def test_buy_on_a_sharp_drop_with_exact_indicators() -> None:
    prices = [100.0, 101.0, 100.0, 99.0, 90.0]
    signals = run(MeanReversion(SMALL), prices)
    assert len(signals) == 1
    index, decision = signals[0]
    assert index == 4
    assert decision.side == "BUY"
    assert decision.quantity == 100
    sma = statistics.mean(prices)
    std = statistics.stdev(prices)
    # changes +1, -1, -1, -9: avg gain 1/4, avg loss 11/4, RS = 1/11, RSI = 100/12
    assert decision.metadata["rsi"] == pytest.approx(100 / 12)
    assert decision.metadata["rsi"] == pytest.approx(expected_rsi(prices))
    assert decision.metadata["sma"] == pytest.approx(98.0)
    assert decision.metadata["sma"] == pytest.approx(sma)
    assert decision.metadata["upper"] == pytest.approx(sma + std)
    assert decision.metadata["lower"] == pytest.approx(sma - std)
    rsi_strength = (30 - 100 / 12) / 30
    band_strength = min(1.0, ((sma - std) - 90.0) / std)
    assert decision.confidence == pytest.approx((rsi_strength + band_strength) / 2)
    assert 0 <= decision.confidence <= 1


def test_sell_on_a_sharp_rise() -> None:
    prices = [100.0, 99.0, 100.0, 101.0, 110.0]
    signals = run(MeanReversion(SMALL), prices)
    assert [(i, d.side) for i, d in signals] == [(4, "SELL")]
    decision = signals[0][1]
    # changes -1, +1, +1, +9: RS = 11, RSI = 100 - 100/12
    assert decision.metadata["rsi"] == pytest.approx(100 - 100 / 12)
    upper = statistics.mean(prices) + statistics.stdev(prices)
    assert decision.metadata["upper"] == pytest.approx(upper)


def test_bands_use_lookback_and_rsi_uses_its_own_period() -> None:
    config = MeanReversionConfig(lookback_period=3, std_multiplier=1.0, rsi_period=5)
    prices = [120.0, 110.0, 105.0, 100.0, 100.0, 95.0]  # warm-up 6 prices
    signals = run(MeanReversion(config), prices)
    assert [(i, d.side) for i, d in signals] == [(5, "BUY")]
    metadata = signals[0][1].metadata
    assert metadata["sma"] == pytest.approx(statistics.mean(prices[-3:]))
    assert metadata["lower"] == pytest.approx(statistics.mean(prices[-3:]) - statistics.stdev(prices[-3:]))
    assert metadata["rsi"] == pytest.approx(0.0)  # five losses or flats, no gains


def test_no_signal_before_warm_up() -> None:
    config = MeanReversionConfig(lookback_period=3, std_multiplier=1.0, rsi_period=5)
    assert run(MeanReversion(config), [120.0, 110.0, 105.0, 100.0, 90.0]) == []
    assert config.warm_up == 6
    assert MeanReversionConfig().warm_up == 20


def test_price_below_band_without_oversold_rsi_does_not_buy() -> None:
    # Mostly rising, then one drop below the band: RSI stays above 30.
    prices = [100.0, 104.0, 108.0, 112.0, 95.0]
    assert expected_rsi(prices) == pytest.approx(100 * 12 / 29)  # gains 12, losses 17
    assert prices[-1] < statistics.mean(prices) - statistics.stdev(prices)
    assert run(MeanReversion(SMALL), prices) == []


def test_rsi_is_100_without_losses_and_on_flat_prices() -> None:
    assert rsi([0.0, 0.0, 0.0]) == 100.0
    assert rsi([1.0, 0.0, 2.0]) == 100.0
    assert rsi([-1.0, -2.0]) == 0.0
    assert rsi([1.0, -1.0]) == pytest.approx(50.0)


def test_flat_prices_never_signal() -> None:
    assert run(MeanReversion(MeanReversionConfig()), [100.0] * 50) == []


def test_edge_triggered_while_condition_holds() -> None:
    config = MeanReversionConfig(lookback_period=3, std_multiplier=0.5, rsi_period=2)
    # Every new price falls well below the band of the last three and RSI is 0.
    prices = [100.0, 99.0, 90.0, 80.0, 70.0]
    signals = run(MeanReversion(config), prices)
    assert [(i, d.side) for i, d in signals] == [(2, "BUY")]


def test_state_copy_does_not_alias() -> None:
    strategy = MeanReversion(SMALL)
    state = strategy.new_state()
    for price in (100.0, 101.0, 100.0, 99.0, 90.0):
        strategy.on_price(state, price)
    copy = state.copy()
    strategy.on_price(state, 95.0)
    assert list(copy.prices) == [100.0, 101.0, 100.0, 99.0, 90.0]
    assert copy.active == "BUY"
    assert copy.prices.maxlen == 5


@pytest.mark.parametrize(
    ("parameters", "name"),
    [
        ({"lookback_period": 1}, "lookback_period"),
        ({"std_multiplier": 0}, "std_multiplier"),
        ({"rsi_period": 0}, "rsi_period"),
        ({"oversold": 80.0}, "oversold"),
        ({"overbought": 101}, "overbought"),
        ({"position_size": -5}, "position_size"),
        ({"rsi": 14}, "rsi"),
    ],
)
def test_from_parameters_rejects_bad_values(parameters: dict[str, object], name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        MeanReversionConfig.from_parameters(parameters)


def test_from_parameters_defaults() -> None:
    assert MeanReversionConfig.from_parameters({"oversold": 25}) == MeanReversionConfig(oversold=25.0)


def _reference_decisions(config: MeanReversionConfig, prices: list[float]) -> list[tuple[str, float, dict]]:
    """DESIGN.md's definition computed naively every tick (the optimised path must agree)."""
    window = max(config.lookback_period, config.rsi_period + 1)
    active, out = None, []
    for i in range(len(prices)):
        seen = prices[max(0, i + 1 - window) : i + 1]
        if len(seen) < window:
            continue
        closes = seen[-config.lookback_period :]
        sma = sum(closes) / len(closes)
        std = math.sqrt(sum([(p - sma) * (p - sma) for p in closes]) / (len(closes) - 1))
        upper, lower = sma + config.std_multiplier * std, sma - config.std_multiplier * std
        recent = seen[-(config.rsi_period + 1) :]
        strength = rsi([b - a for a, b in zip(recent, recent[1:], strict=False)])
        price = seen[-1]
        side = None
        if strength < config.oversold and price < lower:
            side = "BUY"
        elif strength > config.overbought and price > upper:
            side = "SELL"
        if side != active and side is not None:
            out.append((side, strength, {"sma": sma, "std": std}))
        active = side
    return out


@given(
    steps=st.lists(st.floats(min_value=-0.03, max_value=0.03, allow_nan=False), min_size=30, max_size=300),
    lookback=st.integers(2, 25),
    rsi_period=st.integers(1, 25),
)
def test_optimised_path_decides_exactly_like_the_definition(
    steps: list[float], lookback: int, rsi_period: int
) -> None:
    config = MeanReversionConfig(lookback_period=lookback, rsi_period=rsi_period)
    prices, price = [], 100.0
    for step in steps:
        price = round(price * (1 + step), 2) or 0.01
        prices.append(price)
    strategy = MeanReversion(config)
    state = strategy.new_state()
    got = []
    for p in prices:
        decision = strategy.on_price(state, p)
        if decision is not None:
            got.append(
                (
                    decision.side,
                    decision.metadata["rsi"],
                    {"sma": decision.metadata["sma"], "std": decision.metadata["std"]},
                )
            )
    assert got == _reference_decisions(config, prices)
