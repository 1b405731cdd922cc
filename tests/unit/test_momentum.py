"""Momentum: prices in, decisions out."""

from __future__ import annotations

import pickle
import random
from collections import deque

import pytest

from operators.decision import Decision
from operators.errors import ConfigError
from operators.momentum import Momentum, MomentumConfig, MomentumRule, MomentumState
from operators.strategy_api import EdgeTriggered


def run(strategy: Momentum, prices: list[float]) -> list[tuple[int, Decision]]:
    state = strategy.new_state()
    out = []
    for i, price in enumerate(prices):
        decision = strategy.on_price(state, price)
        if decision is not None:
            out.append((i, decision))
    return out


def test_design_example_buys_once_on_the_twentieth_price() -> None:
    signals = run(Momentum(MomentumConfig()), [100.0] * 19 + [101.5])
    assert len(signals) == 1
    index, decision = signals[0]
    assert index == 19
    assert decision.side == "BUY"
    assert decision.quantity == 100
    assert decision.confidence == pytest.approx(0.075)
    assert decision.metadata["momentum"] == pytest.approx(0.015)


def test_no_signal_during_warm_up() -> None:
    # A 50 % jump on the 19th price: the window is not full yet.
    assert run(Momentum(MomentumConfig()), [100.0] * 18 + [150.0]) == []


def test_window_includes_current_price_and_drops_the_oldest() -> None:
    strategy = Momentum(MomentumConfig(lookback_period=3, momentum_threshold=0.01))
    # windows: [100,100,100] m=0; [100,100,102] m=.02 BUY; [100,102,102] m=.02 hold;
    # [102,102,102] m=0 reset; [102,102,99] m=-0.0294 SELL
    signals = run(strategy, [100.0, 100.0, 100.0, 102.0, 102.0, 102.0, 99.0])
    assert [(i, d.side) for i, d in signals] == [(3, "BUY"), (6, "SELL")]
    assert signals[1][1].metadata["momentum"] == pytest.approx((99.0 - 102.0) / 102.0)
    assert signals[1][1].confidence == pytest.approx(5 * 3 / 102)


def test_edge_triggered_repeats_only_after_the_condition_lapses() -> None:
    strategy = Momentum(MomentumConfig(lookback_period=2, momentum_threshold=0.01))
    # changes: +2%, +2%, 0, +2%  -> BUY, (held), reset, BUY
    signals = run(strategy, [100.0, 102.0, 104.04, 104.04, 106.1208])
    assert [(i, d.side) for i, d in signals] == [(1, "BUY"), (4, "BUY")]


def test_side_flip_emits_without_passing_through_neutral() -> None:
    strategy = Momentum(MomentumConfig(lookback_period=2, momentum_threshold=0.01))
    signals = run(strategy, [100.0, 102.0, 98.0])
    assert [d.side for _, d in signals] == ["BUY", "SELL"]


def test_threshold_is_strict() -> None:
    strategy = Momentum(MomentumConfig(lookback_period=2, momentum_threshold=0.5))
    assert run(strategy, [100.0, 150.0]) == []  # m == 0.5 exactly, not > 0.5
    assert run(strategy, [100.0, 50.0]) == []  # m == -0.5 exactly


def test_confidence_is_capped_at_one() -> None:
    signals = run(Momentum(MomentumConfig(lookback_period=2)), [100.0, 130.0])
    assert signals[0][1].confidence == 1.0


def test_state_copy_does_not_alias() -> None:
    strategy = Momentum(MomentumConfig(lookback_period=3))
    state = strategy.new_state()
    for price in (100.0, 101.0, 103.0):
        strategy.on_price(state, price)
    copy = state.copy()
    strategy.on_price(state, 110.0)
    assert copy.window() == [100.0, 101.0, 103.0]
    assert state.window() == [101.0, 103.0, 110.0]
    assert copy.active == "BUY"
    assert copy.prices is not state.prices


def test_the_window_is_a_ring_of_the_last_lookback_prices() -> None:
    strategy = Momentum(MomentumConfig(lookback_period=3, momentum_threshold=0.5))
    state = strategy.new_state()
    seen = []
    for price in (100.0, 101.0, 102.0, 103.0, 104.0, 105.0, 106.0):
        strategy.on_price(state, price)
        seen.append((state.window(), state.head))
    assert seen == [
        ([100.0], 0),
        ([100.0, 101.0], 0),
        ([100.0, 101.0, 102.0], 0),
        ([101.0, 102.0, 103.0], 1),
        ([102.0, 103.0, 104.0], 2),
        ([103.0, 104.0, 105.0], 0),
        ([104.0, 105.0, 106.0], 1),
    ]
    assert len(state.prices) == 3


def test_a_state_pickled_before_the_ring_resumes_with_its_window() -> None:
    # Recovery snapshots written before the ring hold the window as a deque, oldest first.
    strategy = Momentum(MomentumConfig(lookback_period=3, momentum_threshold=0.01))
    old = MomentumState.__new__(MomentumState)
    old.__setstate__({"prices": deque([100.0, 100.0, 100.0], maxlen=3), "active": None})
    assert old.window() == [100.0, 100.0, 100.0]
    assert strategy.on_price(old, 102.0) == Decision("BUY", 100, 0.1, {"momentum": 0.02})
    assert old.window() == [100.0, 100.0, 102.0]
    again = pickle.loads(pickle.dumps(old))
    assert (again.window(), again.head, again.active) == ([100.0, 100.0, 102.0], old.head, "BUY")


def test_from_parameters_fills_defaults_and_converts() -> None:
    config = MomentumConfig.from_parameters({"lookback_period": 5, "momentum_threshold": 1})
    assert config == MomentumConfig(lookback_period=5, momentum_threshold=1.0)
    assert MomentumConfig.from_parameters({}) == MomentumConfig()


@pytest.mark.parametrize(
    ("parameters", "names"),
    [
        ({"lookback_period": 1}, ("lookback_period", "1")),
        ({"lookback_period": "20"}, ("lookback_period", "'20'")),
        ({"lookback_period": True}, ("lookback_period", "True")),
        ({"momentum_threshold": -0.1}, ("momentum_threshold", "-0.1")),
        ({"momentum_threshold": float("nan")}, ("momentum_threshold", "nan")),
        ({"position_size": 0}, ("position_size", "0")),
        ({"lookback": 20}, ("lookback", "20")),
    ],
)
def test_from_parameters_names_the_bad_parameter_and_value(
    parameters: dict[str, object], names: tuple[str, str]
) -> None:
    with pytest.raises(ConfigError) as info:
        MomentumConfig.from_parameters(parameters)
    for name in names:
        assert name in str(info.value)


@pytest.mark.parametrize(
    ("oldest", "now", "expected"),
    [
        (123.0, 124.23, None),  # +1.000% exactly; 0.010000000000000033 in floats
        (123.0, 121.77, None),  # -1.000% exactly
        (123.0, 124.24, "BUY"),
        (123.0, 121.76, "SELL"),
        (100.0, 101.0, None),
    ],
)
def test_threshold_is_strict_at_the_exact_boundary(oldest: float, now: float, expected: str | None) -> None:
    logic = Momentum(MomentumConfig(lookback_period=2, momentum_threshold=0.01, position_size=1))
    state = logic.new_state()
    logic.on_price(state, oldest)
    decision = logic.on_price(state, now)
    assert (decision.side if decision else None) == expected


def _two_steps(config: MomentumConfig, prices: list[float]) -> list[tuple[int, Decision]]:
    """The rule and the framework's edge as two calls, the way a user-written strategy runs."""
    strategy = EdgeTriggered(config, MomentumRule)
    return run(strategy, prices)  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(("lookback", "threshold"), [(2, 0.01), (5, 0.01), (20, 0.01), (3, 0.0), (4, 0.005)])
def test_the_fused_step_decides_like_the_rule_and_the_edge_apart(
    seed: int, lookback: int, threshold: float
) -> None:
    rng = random.Random(seed)
    prices = [100.0]
    for _ in range(3_000):
        # Cent-rounded walks hit moves of exactly 1% (101.00 after 100.00), the exact-decimal case.
        prices.append(max(1.0, round(prices[-1] * (1 + rng.gauss(0, 0.006)), 2)))
    prices += [100.0] * lookback + [101.0, 101.0, 99.0, 100.0]
    config = MomentumConfig(lookback_period=lookback, momentum_threshold=threshold, position_size=3)
    fused = run(Momentum(config), prices)
    assert fused == _two_steps(config, prices)
    assert len(fused) > 10
