"""The example strategies: prices in, signals out (edge-triggered by the framework)."""

from __future__ import annotations

import pytest

from examples.strategies.breakout import Breakout, BreakoutConfig
from examples.strategies.ema_crossover import EmaCrossover, EmaCrossoverConfig
from operators.errors import ConfigError
from operators.strategy_api import EdgeTriggered, config_from_parameters, run_strategy


def signals(logic: EdgeTriggered, prices: list[float]) -> list[tuple[int, str]]:
    state = logic.new_state()
    out = []
    for i, price in enumerate(prices):
        decision = logic.on_price(state, price)
        if decision is not None:
            out.append((i, decision.side))
    return out


def test_ema_crossover_signals_each_crossover_once() -> None:
    logic = run_strategy(EmaCrossover, EmaCrossoverConfig(fast_period=1, slow_period=3, position_size=7))
    # fast = price; slow alpha 0.5: 100, 100, 100, 101 (>), 100.5(<), 100.25(<), 100.125 ...
    prices = [100.0, 100.0, 100.0, 102.0, 99.0, 98.0, 97.0, 103.0]
    # slow: 100, 100, 100, 101, 100, 99, 98, 100.5; fast vs slow from index 2:
    # 2: equal (None); 3: 102>101 BUY; 4: 99<100 SELL; 5: 98<99 held; 6: 97<98 held; 7: 103>100.5 BUY
    assert signals(logic, prices) == [(3, "BUY"), (4, "SELL"), (7, "BUY")]
    state = logic.new_state()
    decisions = [logic.on_price(state, p) for p in prices[:4]]
    buy = decisions[3]
    assert buy is not None
    assert buy.quantity == 7
    assert buy.metadata == {"fast": 102.0, "slow": 101.0}
    assert buy.confidence == 100 * 1.0 / 101.0  # a 0.99 % gap, below full confidence


def test_ema_crossover_warms_up_for_slow_period_prices() -> None:
    logic = run_strategy(EmaCrossover, EmaCrossoverConfig(fast_period=2, slow_period=5))
    # A steady rise: fast above slow from the second price, but no signal before the fifth.
    assert signals(logic, [100.0, 101.0, 102.0, 103.0, 104.0, 105.0]) == [(4, "BUY")]


def test_breakout_signals_new_highs_and_lows_once() -> None:
    logic = run_strategy(Breakout, BreakoutConfig(lookback_period=3, position_size=5))
    prices = [100.0, 101.0, 99.0, 102.0, 103.0, 101.0, 98.0, 97.0, 100.0]
    # 3: 102 > max(100,101,99) BUY; 4: 103 > 102 held; 5: 101 inside [99,103] reset;
    # 6: 98 < min(102,103,101) SELL; 7: 97 < 98 held; 8: 100 inside [97, 101]
    assert signals(logic, prices) == [(3, "BUY"), (6, "SELL")]
    state = logic.new_state()
    out = [logic.on_price(state, p) for p in prices[:4]]
    assert out[3] is not None
    assert out[3].metadata == {"high": 101.0, "low": 99.0}
    assert out[3].quantity == 5
    assert out[3].confidence == 100.0 * (102.0 - 101.0) / 102.0


def test_breakout_needs_a_full_channel() -> None:
    logic = run_strategy(Breakout, BreakoutConfig(lookback_period=3))
    assert signals(logic, [100.0, 200.0, 300.0]) == []


@pytest.mark.parametrize(
    ("cls", "params", "message"),
    [
        (
            EmaCrossover,
            {"fast_period": 5, "slow_period": 5},
            "EmaCrossoverConfig.slow_period must be above fast_period (5), got 5",
        ),
        (EmaCrossover, {"fast": 3}, "EmaCrossoverConfig has no parameter 'fast' (got 3)"),
        (Breakout, {"lookback_period": 0}, "BreakoutConfig.lookback_period must be an integer >= 1, got 0"),
        (Breakout, {"position_size": 1.5}, "BreakoutConfig.position_size must be an integer, got 1.5"),
    ],
)
def test_parameters_are_validated_with_named_errors(cls: type, params: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_parameters(cls.config_type, params)
    assert str(info.value).startswith(message)
