"""A replay with its accounts apart (``--processes 2``) writes what the one-process replay writes.

The two-process runs go through the CLI in a fresh interpreter (a fork wants
no other thread alive, and the test session has some); the same flow with
two worker threads runs here. Inputs hold bad lines and a tick far in the
future, both brokers and both built-in strategies trade, and snapshots fall
every second of event time.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
from bytewax.testing import cluster_main

from alpha_panda.replay import AUTO_TWO_PROCESSES_BYTES, auto_processes, run_replay
from alpha_panda.strategy_file import load_strategy_file
from connectors.files import OutputCounts
from connectors.simulator import MarketSpec, simulate_lines
from dataflows.pipeline import PipelineParams, replay_flow
from operators.errors import ConfigError
from tests.flows.conftest import tick_line

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CONFIGS = load_strategy_file(EXAMPLES / "strategies.yaml")
ENV = {**os.environ, "SNAPSHOT_INTERVAL_S": "1"}


@pytest.fixture(scope="module")
def ticks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    lines = list(simulate_lines(MarketSpec(instruments=6, ticks_per_instrument=1500, seed=5)))
    lines.insert(100, b'{"type":"market_tick","data":{"instrument_token":256265}}\n')
    lines.insert(2000, b"not json at all\n")
    lines.insert(4000, tick_line(256265, 101.0, 86_400 * 400) + b"\n")  # a year ahead: held, then refuted
    path = tmp_path_factory.mktemp("ticks") / "ticks.jsonl"
    path.write_bytes(b"".join(lines))
    return path


def _cli(ticks: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "alpha_panda.cli", "replay", "--quiet", "--ticks", str(ticks)]
    command += ["--strategies", str(EXAMPLES / "strategies.yaml"), "--out", str(out), *extra]
    return subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=120, check=False)


def _files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


def test_two_processes_write_the_files_and_summary_of_one(ticks: Path, tmp_path: Path) -> None:
    one = _cli(ticks, tmp_path / "one", "--processes", "1")
    two = _cli(ticks, tmp_path / "two", "--processes", "2")
    assert one.returncode == two.returncode == 0, two.stderr
    assert _files(tmp_path / "one") == _files(tmp_path / "two")
    assert one.stdout.replace(str(tmp_path / "one"), "OUT") == two.stdout.replace(
        str(tmp_path / "two"), "OUT"
    )
    files = _files(tmp_path / "two")
    assert files["market.ticks.dlq.jsonl"].count(b"\n") == 3
    assert files["paper.pnl.snapshots.jsonl"].count(b"\n") > 100
    assert {"paper.orders.filled.jsonl", "zerodha.orders.filled.jsonl"} <= set(files)
    assert "dead letters (market.ticks.dlq) │ 3" in two.stdout


def test_two_worker_threads_with_the_accounts_apart_give_the_one_worker_files(
    ticks: Path, tmp_path: Path
) -> None:
    params = dataclasses.replace(PipelineParams(), snapshot_interval=PipelineParams().mark_interval)
    summary = run_replay(ticks, CONFIGS, tmp_path / "one", params)
    counts = OutputCounts()
    apart = dataclasses.replace(params, accounts_apart=True)
    out = tmp_path / "apart"
    cluster_main(replay_flow(ticks, CONFIGS, out, apart, counts=counts), [], 0, worker_count_per_proc=2)
    one = _files(tmp_path / "one")
    del one["portfolio.json"]  # written by run_replay, not by the flow
    assert _files(out) == one
    assert counts.topic_counts() == summary.topic_counts
    assert counts.lines_read == summary.lines == 9003


def test_a_failure_in_the_second_process_is_reported_by_name(ticks: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "paper.signals.raw.jsonl").mkdir(parents=True)  # worker 1 cannot open its file
    result = _cli(ticks, out, "--processes", "2")
    assert result.returncode == 2
    assert "replay: the second process failed:" in " ".join(result.stderr.split())
    assert "/out/paper.signals.raw.jsonl" in "".join(result.stderr.split())  # the console wraps lines


def test_two_processes_refuse_layouts_they_cannot_run(ticks: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="replay --processes 2 runs one trading shard"):
        run_replay(
            ticks, CONFIGS, tmp_path / "g", dataclasses.replace(PipelineParams(), groups=3), processes=2
        )
    with pytest.raises(ConfigError, match="replay: processes must be 1 or 2, got 3"):
        run_replay(ticks, CONFIGS, tmp_path / "three", processes=3)


def test_big_files_replay_on_two_processes_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    small, big = tmp_path / "small.jsonl", tmp_path / "big.jsonl"
    small.write_bytes(b"x\n")
    with big.open("wb") as handle:
        handle.truncate(AUTO_TWO_PROCESSES_BYTES)
    monkeypatch.setattr("alpha_panda.replay.can_fork", lambda: True)
    monkeypatch.setattr("alpha_panda.replay.os.cpu_count", lambda: 2)
    assert auto_processes(small, PipelineParams()) == 1
    assert auto_processes(big, PipelineParams()) == 2
    assert auto_processes(big, dataclasses.replace(PipelineParams(), shards=2)) == 1
    monkeypatch.setattr("alpha_panda.replay.os.cpu_count", lambda: 1)
    assert auto_processes(big, PipelineParams()) == 1
    monkeypatch.setattr("alpha_panda.replay.os.cpu_count", lambda: 2)
    monkeypatch.setattr("alpha_panda.replay.can_fork", lambda: False)
    assert auto_processes(big, PipelineParams()) == 1
