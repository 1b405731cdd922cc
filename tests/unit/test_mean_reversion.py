"""Mean reversion: expected values are computed here from first principles."""

from __future__ import annotations

import functools
import math
import pickle
import random
import statistics
from collections import deque
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from operators import mean_reversion
from operators.decision import Decision
from operators.errors import ConfigError
from operators.mean_reversion import (
    MeanReversion,
    MeanReversionConfig,
    MeanReversionRule,
    MeanReversionState,
    rsi,
)
from operators.strategy_api import copy_state


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


# --- The O(1) pre-test must not change any decision or any float -----------------------------------


class ExactRule:
    """The rule as it was before the RSI pre-test: everything computed from the window on every tick.

    Same float operations in the same order as ``MeanReversionRule._decide`` (``sum`` included, so
    it agrees on every Python version), written out plainly over the whole price history.
    """

    def __init__(self, config: MeanReversionConfig) -> None:
        self.config = config
        self.prices: list[float] = []

    def on_price(self, price: float) -> Decision | None:
        c = self.config
        prices = self.prices
        prices.append(price)
        if len(prices) < max(c.lookback_period, c.rsi_period + 1):
            return None
        n = c.lookback_period
        closes = prices[-n:]
        sma = sum(closes) / n
        if price == sma:
            return None
        recent = prices[-(c.rsi_period + 1) :]
        changes = [b - a for a, b in zip(recent, recent[1:], strict=False)]
        gains = sum(x for x in changes if x > 0)
        losses = -sum(x for x in changes if x <= 0)
        if losses == 0:
            strength = 100.0
        else:
            m = len(changes)
            strength = 100.0 - 100.0 / (1.0 + (gains / m) / (losses / m))
        if price < sma and strength < c.oversold:
            wants = "BUY"
        elif price > sma and strength > c.overbought:
            wants = "SELL"
        else:
            return None
        k = c.std_multiplier
        std = math.sqrt(sum([(p - sma) * (p - sma) for p in closes]) / (n - 1))
        upper = sma + k * std
        lower = sma - k * std
        if wants == "BUY" and price < lower:
            confidence = ((c.oversold - strength) / c.oversold + min(1.0, (lower - price) / (k * std))) / 2
            side = "BUY"
        elif wants == "SELL" and price > upper:
            confidence = (
                (strength - c.overbought) / (100.0 - c.overbought) + min(1.0, (price - upper) / (k * std))
            ) / 2
            side = "SELL"
        else:
            return None
        metadata = {"rsi": strength, "sma": sma, "std": std, "upper": upper, "lower": lower}
        return Decision(side, c.position_size, min(1.0, confidence), metadata)


def bits(outcome: object) -> object:
    """An outcome with every float as its hex (``==`` on it is bit-for-bit; -0.0 differs from 0.0)."""
    if isinstance(outcome, Decision):
        return (
            outcome.side,
            outcome.quantity,
            outcome.confidence.hex(),
            {name: value.hex() for name, value in outcome.metadata.items()},
        )
    return outcome


def outcome_of(step: Callable[[float], Decision | None], price: float) -> object:
    """What one tick gives, an exception included (by type), bit-for-bit."""
    try:
        return bits(step(price))
    except ArithmeticError as err:
        return type(err).__name__


def walk(seed: int, length: int, scale: float, kind: str) -> list[float]:
    """A seeded random walk of ``kind``: ``cents`` (2-decimal prices), ``trend`` (long drifting runs),
    ``flat`` (many unchanged prices and flat stretches longer than a window), ``raw`` (unrounded, any
    scale) or ``spikes`` (rare jumps by 1e6 and back, then tiny moves)."""
    rng = random.Random(seed)
    price, out, drift = 100.0, [], 0.0
    for i in range(length):
        if kind == "trend":
            if i % 150 == 0:
                drift = rng.choice([-0.004, 0.004, 0.0])
            price = round(price * (1 + drift + rng.gauss(0, 0.002)), 2) or 0.01
        elif kind == "flat":
            if rng.random() < 0.02:
                out.extend([price] * rng.randint(1, 60))
            if rng.random() < 0.5:
                price = round(price + rng.choice([-0.05, 0.05]), 2) or 0.01
        elif kind == "spikes":
            roll = rng.random()
            if roll < 0.003:
                price *= 1e6
            elif roll < 0.006 and price > 1e3:
                price /= 1e6
            else:
                price *= 1 + rng.gauss(0, 1e-9)
        elif kind == "raw":
            price *= math.exp(rng.gauss(0, 0.01))
        else:
            price = round(price * (1 + rng.gauss(0, 0.002)), 2) or 0.01
        out.append(price * scale if kind == "raw" else price)
    return out[:length]


WALKS = [
    ("cents", 1.0),
    ("trend", 1.0),
    ("flat", 1.0),
    ("spikes", 1.0),
    ("raw", 1.0),
    ("raw", 1e-150),  # tiny, still inside the pre-test's range
    ("raw", 1e150),  # huge, still inside
    ("raw", 1e-300),  # below the pre-test's range (and the squares underflow: std 0)
    ("raw", 1e300),  # above it (the squares overflow: std inf)
]

CONFIGS = [
    MeanReversionConfig(),
    MeanReversionConfig(lookback_period=2, rsi_period=1, std_multiplier=0.5),
    MeanReversionConfig(lookback_period=2, rsi_period=14, std_multiplier=0.5),
    MeanReversionConfig(lookback_period=20, rsi_period=1, std_multiplier=1.0),
    MeanReversionConfig(lookback_period=20, rsi_period=14, oversold=0.5, overbought=99.5, std_multiplier=1.0),
    MeanReversionConfig(
        lookback_period=5, rsi_period=3, oversold=49.999999, overbought=50.000001, std_multiplier=1.0
    ),
    MeanReversionConfig(lookback_period=3, rsi_period=9, oversold=0.0, overbought=100.0),
]


@pytest.mark.parametrize(
    "config", CONFIGS, ids=lambda c: f"lb{c.lookback_period}-rsi{c.rsi_period}-{c.oversold}"
)
def test_pre_test_changes_no_decision_and_no_float(config: MeanReversionConfig) -> None:
    rule = MeanReversionRule(config)
    signals = 0
    for seed, (kind, scale) in enumerate(WALKS):
        prices = walk(seed, 6_000, scale, kind)
        reference = ExactRule(config)
        state = rule.new_state()
        got = [outcome_of(functools.partial(rule.on_price, state), p) for p in prices]
        want = [outcome_of(reference.on_price, p) for p in prices]
        assert got == want, (kind, scale)
        signals += sum(isinstance(o, tuple) for o in want)
    if config.oversold > 0 or config.overbought < 100:
        assert signals > 0
    else:
        assert signals == 0  # levels 0 and 100 cannot be crossed


def test_signals_of_every_kind_occur_in_the_walks() -> None:
    # So the exactness test above compares real BUYs and SELLs, not only Nones.
    config = MeanReversionConfig()
    sides: dict[str, int] = {}
    for seed, (kind, scale) in enumerate(WALKS[:7]):
        reference = ExactRule(config)
        for p in walk(seed, 6_000, scale, kind):
            decision = reference.on_price(p)
            if decision is not None:
                sides[f"{kind}/{scale}/{decision.side}"] = sides.get(f"{kind}/{scale}/{decision.side}", 0) + 1
    for kind, scale in [("cents", 1.0), ("trend", 1.0), ("raw", 1e-150), ("raw", 1e150)]:
        assert sides.get(f"{kind}/{scale}/BUY", 0) > 0
        assert sides.get(f"{kind}/{scale}/SELL", 0) > 0


def test_pre_test_decides_most_ticks_of_a_random_walk(monkeypatch: pytest.MonkeyPatch) -> None:
    rule = MeanReversionRule(MeanReversionConfig())
    exact = 0
    decide = rule._decide

    def counting(state: MeanReversionState, price: float) -> Decision | None:
        nonlocal exact
        exact += 1
        return decide(state, price)

    monkeypatch.setattr(rule, "_decide", counting)
    state = rule.new_state()
    prices = walk(1, 20_000, 1.0, "cents")
    for p in prices:
        rule.on_price(state, p)
    assert exact < len(prices) / 2


def test_band_pre_test_spares_the_rsi_of_most_ticks_the_rsi_pre_test_cannot_rule_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A trending walk keeps the RSI beyond a level, so the RSI pre-test passes most
    # ticks on; the price is still inside its band on most of them.
    rule = MeanReversionRule(MeanReversionConfig())
    counts = {"exact": 0, "rsi": 0}
    decide = rule._decide
    rsi_of = mean_reversion._rsi_of

    def counting_decide(state: MeanReversionState, price: float) -> Decision | None:
        counts["exact"] += 1
        return decide(state, price)

    def counting_rsi(changes: deque[float]) -> float:
        counts["rsi"] += 1
        return rsi_of(changes)

    monkeypatch.setattr(rule, "_decide", counting_decide)
    monkeypatch.setattr(mean_reversion, "_rsi_of", counting_rsi)
    state = rule.new_state()
    prices = walk(3, 20_000, 1.0, "trend")
    for p in prices:
        rule.on_price(state, p)
    assert counts["exact"] > len(prices) / 4
    assert counts["rsi"] < counts["exact"] / 2  # without the band pre-test: equal


def test_rsi_exactly_50_with_levels_just_around_it() -> None:
    # Changes of equal size, gains and losses balanced: RSI exactly 50; the levels 1e-8 either side.
    config = MeanReversionConfig(
        lookback_period=4, rsi_period=4, oversold=49.99999999, overbought=50.00000001
    )
    prices = [100.0 + (0.5 if i % 2 else 0.0) for i in range(200)] + [
        100.0 + 0.5 * (i % 3) for i in range(200)
    ]
    rule, reference = MeanReversionRule(config), ExactRule(config)
    state = rule.new_state()
    assert [bits(rule.on_price(state, p)) for p in prices] == [bits(reference.on_price(p)) for p in prices]


def continuation(rule: MeanReversionRule, state: MeanReversionState, prices: list[float]) -> list[object]:
    return [bits(rule.on_price(state, p)) for p in prices]


@pytest.mark.parametrize("cut", [25, 1_000, 1_007, 2_999])
def test_copy_pickle_and_old_snapshot_continue_identically(cut: int) -> None:
    config = MeanReversionConfig()
    rule = MeanReversionRule(config)
    prices = walk(7, 4_000, 1.0, "trend")
    state = rule.new_state()
    for p in prices[:cut]:
        rule.on_price(state, p)
    copied = state.copy()
    framework_copy = copy_state(state)
    restored = pickle.loads(pickle.dumps(state))
    # A snapshot taken before slots and the pre-test's fields: the instance's dict, without them.
    old = MeanReversionState.__new__(MeanReversionState)
    old.__setstate__(
        {"prices": copied.prices.copy(), "changes": copied.changes.copy(), "active": state.active}
    )
    assert (old.abs_sum, old.abs_floor, old.resync_in) == (0.0, 0.0, 0)
    assert copied == state
    assert restored == state
    assert copied.prices.maxlen == state.prices.maxlen and copied.changes.maxlen == state.changes.maxlen
    reference = ExactRule(config)
    for p in prices[:cut]:
        reference.on_price(p)
    want = [bits(reference.on_price(p)) for p in prices[cut:]]
    assert any(isinstance(o, tuple) for o in want)
    assert continuation(rule, state, prices[cut:]) == want
    for other in (copied, framework_copy, restored, old):
        assert continuation(rule, other, prices[cut:]) == want
    assert copied == state  # carried on alike, from independent data


def spike_walk(seed: int, length: int = 3_000) -> list[float]:
    """Tiny moves around 100 with a one-tick spike to 1e9 every 40 ticks.

    While a spike's two changes (±1e9) are in the window, the running sum of |changes| cannot hold
    the tiny ones (they are below its rounding); once they leave, what remains is mostly rounding
    error, so the pre-test must notice and recompute (the 'quarter of its last value' rule).
    """
    rng = random.Random(seed)
    price, out = 100.0, []
    for i in range(length):
        if i % 40 == 0:
            out.append(price * 1e7)
        price += rng.choice([-1, 1]) * rng.random() * 1e-6 - 2e-8
        out.append(price)
    return out


def test_pre_test_recomputes_after_a_spike_leaves_the_window() -> None:
    config = MeanReversionConfig(std_multiplier=0.5)
    signals = 0
    for seed in range(6):
        prices = spike_walk(seed)
        rule, reference = MeanReversionRule(config), ExactRule(config)
        state = rule.new_state()
        got = [outcome_of(functools.partial(rule.on_price, state), p) for p in prices]
        want = [outcome_of(reference.on_price, p) for p in prices]
        assert got == want
        signals += sum(isinstance(o, tuple) for o in want)
    assert signals > 0
