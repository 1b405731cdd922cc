"""Sweeps: a grid's combinations in one replay equal separate replays exactly."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from alpha_panda.cli import app
from alpha_panda.replay import run_replay
from alpha_panda.report import replay_report
from alpha_panda.sweep import SweepError, combinations, parse_grid, rank, run_sweep, scan_ticks, sweep_configs
from dataflows.pipeline import PipelineParams
from operators.errors import ConfigError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TICKS = EXAMPLES / "ticks.jsonl"
GRID = {"lookback_period": [5, 10, 20], "momentum_threshold": [0.008], "position_size": [50]}


def account_lines(directory: Path, topic: str, strategy_id: str) -> list[bytes]:
    path = directory / f"{topic}.jsonl"
    return [line for line in path.read_bytes().splitlines() if orjson.loads(line)["key"] == strategy_id]


def test_parse_grid_lists_values_and_inclusive_ranges() -> None:
    grid = parse_grid(
        {
            "lookback_period": {"from": 10, "to": 30, "step": 10},
            "momentum_threshold": {"from": 0.005, "to": 0.02, "step": 0.005},
            "position_size": 100,
            "oversold": [20, 30],
        }
    )
    assert grid == {
        "lookback_period": [10, 20, 30],
        "momentum_threshold": [0.005, 0.01, 0.015, 0.02],
        "position_size": [100],
        "oversold": [20, 30],
    }
    combos = combinations("mr", {"a": [1, 2], "b": [3, 4]})
    assert [(c.id, c.parameters) for c in combos] == [
        ("mr-000", {"a": 1, "b": 3}),
        ("mr-001", {"a": 1, "b": 4}),
        ("mr-002", {"a": 2, "b": 3}),
        ("mr-003", {"a": 2, "b": 4}),
    ]


@pytest.mark.parametrize(
    ("loaded", "message"),
    [
        ([1, 2], "grid: expected a mapping of parameter names to values, got [1, 2]"),
        ({"a": []}, "grid: a has no values"),
        ({"a": {"from": 1}}, "grid: a must be a list, a value, or {from, to, step}, got {'from': 1}"),
        (
            {"a": {"from": 1, "to": 2, "step": 0}},
            "grid: a range needs numbers from <= to and step > 0, got {'from': 1, 'to': 2, 'step': 0}",
        ),
    ],
)
def test_bad_grids_are_named(loaded: object, message: str) -> None:
    with pytest.raises(SweepError) as info:
        parse_grid(loaded)
    assert str(info.value) == message


def test_three_combinations_equal_three_separate_replays(tmp_path: Path) -> None:
    params = PipelineParams(brokers=("paper",))
    result = run_sweep(TICKS, "momentum", GRID, tmp_path / "sweep", params)
    assert [r["rank"] for r in result.rows] == [1, 2, 3]
    combos = combinations("momentum", GRID)
    tokens = sorted(
        {orjson.loads(line)["data"]["instrument_token"] for line in TICKS.read_bytes().splitlines()}
    )
    swept = tmp_path / "sweep" / "replay"
    by_id = {row["id"]: row for row in result.rows}
    for combo in combos:
        alone = tmp_path / combo.id
        configs = sweep_configs("momentum", [combo], tokens)
        run_replay(TICKS, configs, alone, params)
        for topic in ("paper.orders.filled", "paper.pnl.snapshots"):  # all a sweep writes
            mine = account_lines(swept, topic, combo.id)
            assert mine == account_lines(alone, topic, combo.id), f"{combo.id} {topic}"
        assert account_lines(swept, "paper.orders.filled", combo.id)  # each combination traded
        (account,) = replay_report(alone, scan_ticks(TICKS).window())["accounts"]
        row = by_id[combo.id]
        assert {k: row[k] for k in account["stats"]} == account["stats"]
        assert row["total_pnl"] == account["stats"]["final_equity"] - account["stats"]["initial_equity"]
        assert row["parameters"] == combo.parameters
    pnl = [r["total_pnl"] for r in result.rows]
    assert pnl == sorted(pnl, reverse=True)


def test_rank_by_each_metric() -> None:
    rows = [
        {"id": "x-0", "total_pnl": 5.0, "sharpe": None, "max_drawdown": 0.2},
        {"id": "x-1", "total_pnl": 9.0, "sharpe": 1.5, "max_drawdown": 0.3},
        {"id": "x-2", "total_pnl": -1.0, "sharpe": 2.5, "max_drawdown": 0.1},
    ]
    assert [r["id"] for r in rank(rows, "total_pnl")] == ["x-1", "x-0", "x-2"]
    assert [r["id"] for r in rank(rows, "sharpe")] == ["x-2", "x-1", "x-0"]  # no Sharpe: last
    assert [r["id"] for r in rank(rows, "max_drawdown")] == ["x-2", "x-0", "x-1"]  # shallowest first
    with pytest.raises(
        SweepError, match=r"^--rank-by must be one of \['total_pnl', 'sharpe', 'max_drawdown'\], got 'pnl'$"
    ):
        rank(rows, "pnl")


def test_sweep_command_writes_the_ranked_table_csv_and_json(tmp_path: Path) -> None:
    grid = tmp_path / "grid.yaml"
    grid.write_text(
        "lookback_period: [5, 10, 20]\nmomentum_threshold: 0.008\nposition_size: 50\n", encoding="utf-8"
    )
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        [
            "sweep",
            "--ticks",
            str(TICKS),
            "--strategy",
            "momentum",
            "--grid",
            str(grid),
            "--out",
            str(out),
            "--rank-by",
            "sharpe",
            "--instruments",
            "256265,257265",
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "Sweep of momentum: 3 combinations, 6,000 ticks, by sharpe" in result.output
    document = json.loads((out / "sweep.json").read_text())
    assert document["rank_by"] == "sharpe"
    rows = document["combinations"]
    assert [r["rank"] for r in rows] == [1, 2, 3]
    sharpes = [r["sharpe"] for r in rows]
    assert sharpes == sorted(sharpes, reverse=True)
    with (out / "sweep.csv").open(encoding="utf-8") as handle:
        table = list(csv.DictReader(handle))
    assert [t["id"] for t in table] == [r["id"] for r in rows]
    assert [float(t["total_pnl"]) for t in table] == [r["total_pnl"] for r in rows]
    assert [int(t["lookback_period"]) for t in table] == [r["parameters"]["lookback_period"] for r in rows]
    fills = [
        orjson.loads(x) for x in (out / "replay" / "paper.orders.filled.jsonl").read_bytes().splitlines()
    ]
    assert {f["data"]["instrument_token"] for f in fills} <= {256265, 257265}
    written = sorted(path.name for path in (out / "replay").iterdir())
    # paper only, and only what the statistics read
    assert written == ["paper.orders.filled.jsonl", "paper.pnl.snapshots.jsonl", "portfolio.json"]


def test_sweep_command_exits_2_on_bad_parameters(tmp_path: Path) -> None:
    grid = tmp_path / "grid.yaml"
    grid.write_text("lookback_period: [1, 10]\n", encoding="utf-8")
    result = CliRunner().invoke(
        app,
        [
            "sweep",
            "--ticks",
            str(TICKS),
            "--strategy",
            "momentum",
            "--grid",
            str(grid),
            "--out",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 2
    assert " ".join(result.output.split()) == (
        "error: strategy 'momentum-000': parameters: "
        "MomentumConfig.lookback_period must be an integer >= 2, got 1"
    )


def test_unknown_strategy_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="^strategy 'nope-000': strategy_type must be one of"):
        sweep_configs("nope", combinations("nope", {"a": [1]}), [1])
