"""Strategy configuration rows, broker routing and per-instrument execution."""

from __future__ import annotations

from typing import Any

import pytest

from operators.errors import ConfigError
from operators.mean_reversion import MeanReversion, MeanReversionConfig
from operators.momentum import Momentum, MomentumConfig, MomentumState
from operators.strategy import (
    InstrumentState,
    InstrumentStrategies,
    StrategyConfig,
    build_strategy,
)


def row(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "mom1",
        "strategy_type": "momentum",
        "instruments": [256265, 738561],
        "parameters": {"lookback_period": 3, "momentum_threshold": 0.01},
        "is_active": True,
        "zerodha_trading_enabled": False,
    }
    return {**base, **overrides}


def momentum(sid: str, tokens: tuple[int, ...], **params: Any) -> StrategyConfig:
    return StrategyConfig(sid, "momentum", tokens, tuple(sorted(params.items())))


def test_from_mapping_builds_a_hashable_config() -> None:
    config = StrategyConfig.from_mapping({**row(), "created_at": "2024-01-01"})
    assert config == StrategyConfig(
        id="mom1",
        strategy_type="momentum",
        instruments=(256265, 738561),
        parameters=(("lookback_period", 3), ("momentum_threshold", 0.01)),
    )
    assert hash(config) == hash(StrategyConfig.from_mapping(row()))
    assert config.params == {"lookback_period": 3, "momentum_threshold": 0.01}


def test_from_mapping_defaults() -> None:
    config = StrategyConfig.from_mapping(
        {"id": "mr", "strategy_type": "mean_reversion", "instruments": [1, 1, 2]}
    )
    assert config.instruments == (1, 2)
    assert config.parameters == ()
    assert config.is_active is True
    assert config.zerodha_trading_enabled is False
    assert isinstance(build_strategy(config), MeanReversion)


@pytest.mark.parametrize(
    ("overrides", "needles"),
    [
        ({"strategy_type": "arbitrage"}, ["mom1", "strategy_type", "arbitrage"]),
        ({"instruments": [1, -2]}, ["mom1", "instruments", "-2"]),
        ({"instruments": "256265"}, ["mom1", "instruments"]),
        ({"instruments": [True]}, ["mom1", "instruments"]),
        ({"parameters": {"lookback_period": 0}}, ["mom1", "lookback_period", "0"]),
        ({"parameters": {"window": 5}}, ["mom1", "window"]),
        ({"parameters": [1, 2]}, ["mom1", "parameters"]),
        ({"is_active": "yes"}, ["mom1", "is_active", "yes"]),
        ({"zerodha_trading_enabled": 1}, ["mom1", "zerodha_trading_enabled"]),
        ({"id": ""}, ["id"]),
    ],
)
def test_from_mapping_errors_name_strategy_and_field(overrides: dict[str, Any], needles: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        StrategyConfig.from_mapping(row(**overrides))
    for needle in needles:
        assert needle in str(info.value)


def test_brokers_routing() -> None:
    both = ("paper", "zerodha")
    assert StrategyConfig.from_mapping(row()).brokers(both) == ("paper",)
    enabled = StrategyConfig.from_mapping(row(zerodha_trading_enabled=True))
    assert enabled.brokers(["zerodha", "paper"]) == ("paper", "zerodha")
    assert enabled.brokers(["paper"]) == ("paper",)
    assert enabled.brokers([]) == ()  # ACTIVE_BROKERS switches paper off too
    inactive = StrategyConfig.from_mapping(row(is_active=False, zerodha_trading_enabled=True))
    assert inactive.brokers(both) == ()


def test_build_strategy_uses_typed_parameters() -> None:
    strategy = build_strategy(StrategyConfig.from_mapping(row()))
    assert isinstance(strategy, Momentum)
    assert strategy.config == MomentumConfig(lookback_period=3, momentum_threshold=0.01)


def test_build_strategy_rejects_a_directly_built_bad_config() -> None:
    with pytest.raises(ConfigError, match="'bad'.*lookback_period"):
        build_strategy(momentum("bad", (1,), lookback_period=1))


def test_only_active_strategies_trading_the_token_run() -> None:
    configs = [
        momentum("a", (1, 2), lookback_period=2),
        momentum("b", (2,), lookback_period=3),
        StrategyConfig("off", "momentum", (1,), is_active=False),
    ]
    logic = InstrumentStrategies(configs)
    assert [c.id for c in logic.strategies_for(1)] == ["a"]
    assert [c.id for c in logic.strategies_for(2)] == ["a", "b"]
    assert logic.strategies_for(99) == ()
    assert logic.tokens == frozenset({1, 2})
    state = logic.new_state()
    assert logic.on_price(state, 2, 100.0) == []
    out = logic.on_price(state, 2, 110.0)
    assert [(c.id, d.side) for c, d in out] == [("a", "BUY")]
    out = logic.on_price(state, 2, 120.0)
    assert [(c.id, d.side) for c, d in out] == [("b", "BUY")]  # a already BUY
    assert set(state.strategies) == {"a", "b"}
    assert logic.on_price(state, 99, 1.0) == []


def test_duplicate_ids_are_rejected() -> None:
    with pytest.raises(ConfigError, match="'a'"):
        InstrumentStrategies([momentum("a", (1,)), momentum("a", (2,))])


def warm(logic: InstrumentStrategies, state: InstrumentState, token: int) -> None:
    for price in (100.0, 100.0):
        logic.on_price(state, token, price)


def test_hot_reload_keeps_unchanged_restarts_changed_drops_removed() -> None:
    old = InstrumentStrategies(
        [
            momentum("same", (1,), lookback_period=3),
            momentum("changed", (1,), lookback_period=3),
            momentum("removed", (1,), lookback_period=3),
            momentum("moved", (1,), lookback_period=3),
        ]
    )
    state = old.new_state()
    warm(old, state, 1)
    new = old.with_configs(
        [
            momentum("same", (1, 5), lookback_period=3),  # new instrument, same params
            momentum("changed", (1,), lookback_period=4),
            momentum("moved", (2,), lookback_period=3),
            StrategyConfig("removed", "momentum", (1,), (("lookback_period", 3),), False),
        ]
    )
    new.reconcile(state, 1)
    assert set(state.strategies) == {"same"}
    assert set(state.built_for) == {"same"}
    out = new.on_price(state, 1, 110.0)
    # "same" kept its two warm-up prices and fires now; "changed" restarted.
    assert [c.id for c, _ in out] == ["same"]
    assert len(state.strategies["changed"].prices) == 1


def test_on_price_reconciles_without_an_explicit_call() -> None:
    old = InstrumentStrategies([momentum("a", (1,), lookback_period=3), momentum("b", (1,))])
    state = old.new_state()
    warm(old, state, 1)
    new = old.with_configs([momentum("a", (1,), lookback_period=2)])
    new.on_price(state, 1, 100.0)
    assert set(state.strategies) == {"a"}
    assert len(state.strategies["a"].prices) == 1  # parameters changed: warm-up again


def test_state_restored_from_a_copy_is_reused() -> None:
    logic = InstrumentStrategies([momentum("a", (1,), lookback_period=3)])
    state = logic.new_state()
    warm(logic, state, 1)
    restored = state.copy()
    restored.built_for = {k: MomentumConfig(lookback_period=3) for k in restored.built_for}
    out = logic.on_price(restored, 1, 110.0)
    assert [c.id for c, _ in out] == ["a"]


def test_instrument_state_copy_does_not_alias() -> None:
    logic = InstrumentStrategies([momentum("a", (1,), lookback_period=3)])
    state = logic.new_state()
    warm(logic, state, 1)
    copy = state.copy()
    logic.on_price(state, 1, 110.0)
    strategy_state = copy.strategies["a"]
    assert isinstance(strategy_state, MomentumState)
    assert strategy_state.window() == [100.0, 100.0]
    assert strategy_state.active is None
    assert copy.strategies is not state.strategies
    assert copy.built_for is not state.built_for


def test_mean_reversion_strategy_through_instrument_strategies() -> None:
    config = StrategyConfig.from_mapping(
        {
            "id": "mr",
            "strategy_type": "mean_reversion",
            "instruments": [7],
            "parameters": {"lookback_period": 5, "std_multiplier": 1.0, "rsi_period": 4},
        }
    )
    logic = InstrumentStrategies([config])
    state = logic.new_state()
    results = [logic.on_price(state, 7, p) for p in (100.0, 101.0, 100.0, 99.0, 90.0)]
    assert [len(r) for r in results] == [0, 0, 0, 0, 1]
    assert results[-1][0][1].side == "BUY"
    assert isinstance(build_strategy(config).config, MeanReversionConfig)


def test_an_empty_instrument_list_is_a_configuration_error() -> None:
    with pytest.raises(
        ConfigError, match=r"strategy 'x': instruments must list at least one instrument token, got \[\]"
    ):
        StrategyConfig.from_mapping({"id": "x", "strategy_type": "momentum", "instruments": []})


def test_active_brokers_can_switch_paper_off() -> None:
    config = StrategyConfig.from_mapping(
        {"id": "x", "strategy_type": "momentum", "instruments": [1], "zerodha_trading_enabled": True}
    )
    assert config.brokers(("zerodha",)) == ("zerodha",)
    assert config.brokers(("paper",)) == ("paper",)
    assert config.brokers(("paper", "zerodha")) == ("paper", "zerodha")
    assert config.brokers(()) == ()
