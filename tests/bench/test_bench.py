"""``alpha-panda bench`` runs end to end at tiny sizes and writes a complete report.

Behaviour only: keys and positive numbers, never wall-clock thresholds.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from alpha_panda.bench import (
    BenchConfig,
    CountingSink,
    market,
    pipeline_flow,
    run_bench,
    run_timed,
)
from alpha_panda.cli import app

TINY = BenchConfig(instruments=(3, 7), ticks=700, scaling_instruments=3, scaling_ticks=600, processes=False)


@pytest.fixture(scope="module")
def report() -> dict:
    return run_bench(TINY)


def test_report_names_machine_and_versions(report: dict) -> None:
    assert {"cpu_model", "cores", "memory_bytes"} <= report["hardware"].keys()
    assert report["hardware"]["cores"] > 0
    assert {"python", "bytewax", "msgspec"} <= report["software"].keys()
    assert report["software"]["bytewax"] == "0.21.1"


def test_replay_reports_pipeline_and_bare_rates(report: dict) -> None:
    rows = report["scenarios"]["replay"]
    assert [row["instruments"] for row in rows] == [3, 7]
    for row in rows:
        assert row["ticks"] > 0
        for run in ("pipeline", "bare"):
            assert row[run]["seconds"] > 0
            assert row[run]["ticks_per_s"] > 0
        assert row["bare"]["outputs"] == row["ticks"]  # one keyed tick per tick
        assert row["pipeline"]["outputs"] > 0
        assert row["pipeline_over_bare"] > 0
        assert row["rss_bytes"] > 0


def test_memory_reports_state_per_strategy_instrument(report: dict) -> None:
    for row in report["scenarios"]["memory"]:
        assert row["strategy_keys"] == 1  # one shard
        assert row["account_keys"] == 4  # 2 strategies x 2 brokers
        assert row["instruments_in_state"] == row["instruments"]
        assert row["strategy_instrument_pairs"] == 2 * row["instruments"]
        assert row["strategy_bytes_per_pair"] > 0
        assert row["account_bytes_per_pair"] > 0
        assert row["bytes_per_pair"] == pytest.approx(
            row["strategy_bytes_per_pair"] + row["account_bytes_per_pair"]
        )


def test_scaling_compares_worker_layouts(report: dict) -> None:
    rows = report["scenarios"]["scaling"]
    assert [row["workers"] for row in rows] == [1, 1, 2]
    assert rows[0]["speedup"] == pytest.approx(1.0)
    outputs = {row["outputs"] for row in rows}
    assert len(outputs) == 1  # same messages whatever the layout
    for row in rows:
        assert row["ticks_per_s"] > 0
        assert row["speedup"] > 0


@pytest.mark.integration
def test_live_scenario_measures_on_real_servers() -> None:
    config = BenchConfig(
        scenarios=("live",), live_ticks=600, live_rates=(300.0,), live_seconds=2, live_modes=("all-in-one",)
    )
    rows = run_bench(config)["scenarios"]["live"]
    assert [row["kind"] for row in rows] == ["raw_broker", "sustained", "latency"]
    raw, sustained, latency = rows
    assert raw["messages"] == 600
    assert raw["produce_per_s"] > 0
    assert raw["consume_per_s"] > 0
    assert sustained["ticks"] == 600
    assert sustained["ticks_per_s"] > 0
    assert sustained["fills"] > 0
    assert sustained["rss_kib"]["pipeline"] > 0
    assert latency["ticks"] > 0
    assert latency["tick_to_signal_ms"]["count"] > 0
    assert 0 < latency["tick_to_signal_ms"]["p50"] <= latency["tick_to_signal_ms"]["p99"]
    assert set(latency["rss_growth_kib"]) == {"pipeline"}


def test_targets_are_checked_for_what_ran(report: dict) -> None:
    names = {check["target"] for check in report["targets"]}
    assert any(name.startswith("pipeline_over_bare") for name in names)
    assert any(name.startswith("two_worker_speedup") for name in names)
    assert all(isinstance(check["met"], bool) for check in report["targets"])


def test_pipeline_counts_the_same_outputs_each_run() -> None:
    messages, spec = market(4, 400)
    counts = []
    for _ in range(2):
        sink = CountingSink()
        assert run_timed(pipeline_flow(messages, spec, sink)) > 0
        counts.append(sink.total)
    assert counts[0] == counts[1] > 0


@pytest.mark.slow
def test_two_processes_cluster(tmp_path: Path) -> None:
    config = BenchConfig(scenarios=("scaling",), scaling_instruments=3, scaling_ticks=600)
    rows = run_bench(config)["scenarios"]["scaling"]
    assert rows[-1]["processes"] == 2
    assert rows[-1]["outputs"] == rows[0]["outputs"]
    assert rows[-1]["seconds"] > 0


def test_command_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    args = [
        "bench",
        "--quick",
        "--scenarios",
        "replay",
        "--instruments",
        "5",
        "--ticks",
        "500",
        "--json",
        str(out),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "pipeline/bare" in result.output
    data = json.loads(out.read_text())
    assert data["config"]["instruments"] == [5]
    assert data["scenarios"]["replay"][0]["pipeline"]["ticks_per_s"] > 0


def test_command_rejects_unknown_scenarios(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["bench", "--scenarios", "warp", "--json", str(tmp_path / "b.json")])
    assert result.exit_code == 2
