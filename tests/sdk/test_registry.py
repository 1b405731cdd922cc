"""Finding strategies: built-ins, entry points, module:Class; unknown and broken ones are named errors."""

from __future__ import annotations

import logging
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from alpha_panda.cli import app
from alpha_panda.replay import run_replay
from dataflows.live import parse_configs
from operators.errors import ConfigError
from operators.mean_reversion import MeanReversionRule
from operators.momentum import MomentumRule
from operators.strategy import InstrumentStrategies, StrategyConfig
from operators.strategy_registry import resolve
from tests.flows.conftest import tick_line, write_lines
from tests.sdk.conftest import ENTRY_POINT

TOKEN = 256265


def row(strategy_type: str, sid: str = "mine", **parameters: object) -> dict:
    return {"id": sid, "strategy_type": strategy_type, "instruments": [TOKEN], "parameters": parameters}


def band_lines() -> list[bytes]:
    # window 5, width 0.2 %: flat, a jump up (BUY), held, back to flat, a drop (SELL)
    prices = [100.0] * 5 + [101.0, 101.5, 101.5, 101.5, 101.5, 101.5, 101.5, 99.0]
    return [tick_line(TOKEN, p, s) for s, p in enumerate(prices)]


def read(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_builtins_resolve_to_their_rules() -> None:
    assert resolve("momentum") is MomentumRule
    assert resolve("mean_reversion") is MeanReversionRule


def test_an_entry_point_strategy_trades_in_replay(user_package: str, tmp_path: Path) -> None:
    config = StrategyConfig.from_mapping(row(ENTRY_POINT, window=5, width=0.002))
    summary = run_replay(write_lines(tmp_path / "ticks.jsonl", band_lines()), [config], tmp_path / "out")
    signals = read(tmp_path / "out" / "paper.signals.raw.jsonl")
    # tick 5: 101 > mean(100,100,100,100,101)=100.2 * 1.002 -> BUY; ticks 6..: still above or inside;
    # tick 12: 99 < mean(101.5 x4, 99)=101.0 * 0.998 -> SELL
    assert [(s["data"]["signal_type"], s["data"]["price"]) for s in signals] == [
        ("BUY", 101.0),
        ("SELL", 99.0),
    ]
    fills = read(tmp_path / "out" / "paper.orders.filled.jsonl")
    assert [(f["data"]["side"], f["data"]["quantity"], f["data"]["fill_price"]) for f in fills] == [
        ("BUY", 10, 101.0 * 1.0005),
        ("SELL", 10, 99.0 * 0.9995),
    ]
    assert summary.accounts[("paper", "mine")].fills == 2


def test_module_class_path_finds_the_same_class(user_package: str, tmp_path: Path) -> None:
    by_entry = resolve(ENTRY_POINT)
    assert resolve(f"{user_package}:Band") is by_entry
    ticks = write_lines(tmp_path / "ticks.jsonl", band_lines())
    run_replay(ticks, [StrategyConfig.from_mapping(row(ENTRY_POINT))], tmp_path / "a")
    run_replay(ticks, [StrategyConfig.from_mapping(row(f"{user_package}:Band"))], tmp_path / "b")
    assert (tmp_path / "a" / "paper.orders.filled.jsonl").read_bytes() == (
        tmp_path / "b" / "paper.orders.filled.jsonl"
    ).read_bytes()


@pytest.mark.parametrize(
    ("strategy_type", "message"),
    [
        (
            "arbitrage",
            "strategy 'mine': strategy_type must be one of ['mean_reversion', 'momentum'], an entry point of "
            "alpha_panda.strategies or 'package.module:ClassName', got 'arbitrage'",
        ),
        (
            "no_such_package.strategies:Thing",
            "strategy 'mine': strategy_type 'no_such_package.strategies:Thing': cannot import "
            "no_such_package.strategies: ModuleNotFoundError: No module named 'no_such_package'",
        ),
        (
            "ap_user_strategies:Gone",
            "strategy 'mine': strategy_type 'ap_user_strategies:Gone': module ap_user_strategies has no Gone",
        ),
        (
            "user_missing",
            "strategy 'mine': strategy_type 'user_missing': entry point ap_user_strategies:Gone "
            "fails to load: "
            "AttributeError: module 'ap_user_strategies' has no attribute 'Gone'",
        ),
        (
            "user_nostep",
            "strategy 'mine': strategy_type 'user_nostep' (entry point of alpha_panda.strategies) (NoStep) "
            "has no on_price() method",
        ),
        (
            "user_exploding",
            "strategy 'mine': strategy_type 'user_exploding' (Exploding) is broken: "
            "RuntimeError: no licence file found",
        ),
        (
            "operators.momentum:MomentumConfig",
            "strategy 'mine': strategy_type 'operators.momentum:MomentumConfig' "
            "(MomentumConfig) has no config_type dataclass",
        ),
    ],
)
def test_unknown_or_broken_strategies_are_named_config_errors(
    user_package: str, strategy_type: str, message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        StrategyConfig.from_mapping(row(strategy_type))
    assert str(info.value) == message


def test_bad_parameters_of_a_user_strategy_name_the_strategy(user_package: str) -> None:
    with pytest.raises(ConfigError) as info:
        StrategyConfig.from_mapping(row(ENTRY_POINT, window=1))
    assert str(info.value) == "strategy 'mine': parameters: BandConfig.window must be an integer >= 2, got 1"


def test_replay_exits_2_naming_a_broken_strategy(user_package: str, tmp_path: Path) -> None:
    strategies = tmp_path / "strategies.yaml"
    strategies.write_text(
        "strategies:\n"
        "  - {id: fine, strategy_type: momentum, instruments: [256265]}\n"
        "  - {id: exploding, strategy_type: user_exploding, instruments: [256265]}\n",
        encoding="utf-8",
    )
    ticks = write_lines(tmp_path / "ticks.jsonl", band_lines())
    result = CliRunner().invoke(
        app,
        [
            "replay",
            "--ticks",
            str(ticks),
            "--strategies",
            str(strategies),
            "--out",
            str(tmp_path / "o"),
            "--quiet",
        ],
    )
    assert result.exit_code == 2
    assert " ".join(result.output.split()) == (
        "error: strategy 'exploding': strategy_type 'user_exploding' (Exploding) is broken: "
        "RuntimeError: no licence file found"
    )


def test_live_flows_log_and_skip_a_broken_strategy(
    user_package: str, caplog: pytest.LogCaptureFixture
) -> None:
    rows = [row("momentum", "fine"), row("user_exploding", "exploding"), row(ENTRY_POINT, "band")]
    with caplog.at_level(logging.ERROR, logger="alpha_panda.dataflows"):
        configs = parse_configs(rows)
    assert [c.id for c in configs] == ["fine", "band"]
    assert [r.getMessage() for r in caplog.records] == [
        "skipping strategy configuration 'exploding': strategy 'exploding': strategy_type 'user_exploding' "
        "(Exploding) is broken: RuntimeError: no licence file found"
    ]
    strategies = InstrumentStrategies(configs)  # the others keep trading
    state = strategies.new_state()
    for price in (100.0, 100.0, 100.0, 100.0, 100.0):
        assert strategies.on_price(state, TOKEN, price) == []
    assert [(c.id, d.side) for c, d in strategies.on_price(state, TOKEN, 101.0)] == [("band", "BUY")]
