"""The conformance kit passes the built-ins and the examples, and catches what it must."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest

from alpha_panda.testing import ConformanceError, check_strategy
from examples.strategies.breakout import Breakout
from examples.strategies.ema_crossover import EmaCrossover
from operators.decision import Decision
from operators.mean_reversion import MeanReversionRule
from operators.momentum import MomentumRule
from operators.strategy_api import StrategyState


def market(instruments: int = 3, ticks: int = 900, seed: int = 11) -> list[tuple[int, float]]:
    """Round-robin random walks with trending and mean-reverting stretches, prices to the cent."""
    rng = random.Random(seed)
    prices = [100.0 + 10 * i for i in range(instruments)]
    out = []
    for n in range(ticks):
        i = n % instruments
        drift = 0.004 if (n // 150) % 2 == 0 else -0.004
        prices[i] = max(1.0, round(prices[i] * (1 + drift * rng.choice((1, -1, 1)) + rng.gauss(0, 0.006)), 2))
        out.append((256265 + 1000 * i, prices[i]))
    return out


CASES = [
    (MomentumRule, {"lookback_period": 10, "momentum_threshold": 0.01, "position_size": 10}, "momentum"),
    (
        MeanReversionRule,
        {"lookback_period": 10, "rsi_period": 5, "std_multiplier": 1.0, "position_size": 10},
        "mean_reversion",
    ),
    (EmaCrossover, {"fast_period": 5, "slow_period": 20, "position_size": 10}, None),
    (Breakout, {"lookback_period": 15, "position_size": 10}, None),
]


@pytest.mark.parametrize(("cls", "params", "name"), CASES, ids=[c[0].__name__ for c in CASES])
def test_builtins_and_examples_conform(cls: type, params: dict, name: str | None) -> None:
    report = check_strategy(cls, params, market(), strategy_type=name)
    assert report.signals  # the tape exercises the strategy
    assert set(report.state_bytes) == {256265, 257265, 258265}
    assert 0 < report.max_state_bytes <= 16_384
    assert report.batch_step is (cls is EmaCrossover)
    assert report.pipeline_messages >= len(report.signals) * 2  # a signal and its risk decision at least
    print(f"{cls.__name__}: {len(report.signals)} signals, state bytes per instrument {report.state_bytes}")


@dataclass(frozen=True)
class _NoParams:
    pass


@dataclass
class _Aliased(StrategyState):
    window: list

    def copy(self) -> _Aliased:
        return _Aliased(self.window)  # the bug: the same list


class Aliasing:
    """Its state's copy() shares the live window."""

    config_type = _NoParams

    def __init__(self, config: _NoParams) -> None:
        self.config = config

    def new_state(self) -> _Aliased:
        return _Aliased([])

    def on_price(self, state: _Aliased, price: float) -> Decision | None:
        state.window.append(price)
        if len(state.window) > 2 and price > state.window[-3]:
            return Decision("BUY", 1, 1.0, {})
        return None


class BatchDisagrees(Aliasing):
    """A batch step that forgets the state."""

    def new_state(self) -> _Aliased:
        return _Aliased([])

    def on_prices(self, state: _Aliased, prices: list[float]) -> list[Decision | None]:
        return [None for _ in prices]


@dataclass
class _Fixed(StrategyState):
    window: list

    def copy(self) -> _Fixed:
        return _Fixed(list(self.window))


class BatchDisagreesFixed(BatchDisagrees):
    def new_state(self) -> _Fixed:  # type: ignore[override]
        return _Fixed([])


def test_an_aliasing_copy_is_caught() -> None:
    with pytest.raises(
        ConformanceError,
        match=r"^Aliasing fails 'snapshot': running on after copy_state\(\) changed the copy",
    ):
        check_strategy(Aliasing, {}, market(instruments=1, ticks=60))


def test_a_batch_step_that_disagrees_is_caught() -> None:
    with pytest.raises(
        ConformanceError,
        match=r"^BatchDisagreesFixed fails 'batch step': on_prices gives other decisions than on_price",
    ):
        check_strategy(BatchDisagreesFixed, {}, market(instruments=1, ticks=60))


def test_a_strategy_that_never_signals_proves_nothing() -> None:
    with pytest.raises(ConformanceError, match=r"^MomentumRule fails 'deterministic': no signal at all"):
        check_strategy(MomentumRule, {"momentum_threshold": 5.0}, market(instruments=1, ticks=60))
