"""``alpha-panda bench`` runs end to end at tiny sizes and writes a complete report.

Behaviour only: exact counts where they are knowable, never wall-clock thresholds.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, run_main
from rich.console import Console
from typer.testing import CliRunner

from alpha_panda.bench.config import SCENARIO_NAMES, BenchConfig
from alpha_panda.bench.harness import (
    TRADING,
    CountingSink,
    bare_flow,
    bench_configs,
    market,
    pipeline_flow,
    run_timed,
)
from alpha_panda.bench.peer_tape import write_peer_tape
from alpha_panda.bench.report import live_table, print_report, replay_table
from alpha_panda.bench.run import SCENARIOS, run_bench
from alpha_panda.bench.scenarios.peers import run_replay_child
from alpha_panda.bench.scenarios.replay import Make, interleaved_runs, median_ratio
from alpha_panda.cli import app
from alpha_panda.replay import run_replay
from dataflows.pipeline import PipelineParams
from schemas.envelope import Outbound

TINY = BenchConfig(
    scenarios=("replay", "memory", "scaling", "peers"),
    instruments=(3, 7),
    ticks=700,
    scaling_instruments=3,
    scaling_ticks=600,
    processes=False,
    peer_instruments=(3,),
    peer_ticks=900,
    speed_additions=10_000,
)


@pytest.fixture(scope="module")
def report() -> dict:
    return run_bench(TINY)


def _line_counts(out_dir: Path) -> Counter[str]:
    return Counter({path.stem: len(path.read_bytes().splitlines()) for path in out_dir.glob("*.jsonl")})


def test_report_names_machine_and_versions(report: dict) -> None:
    assert {"cpu_model", "cores", "memory_bytes"} <= report["hardware"].keys()
    assert report["hardware"]["cores"] > 0
    assert {"python", "alpha-panda", "bytewax", "msgspec"} <= report["software"].keys()
    assert report["software"]["bytewax"] == "0.21.1"
    assert report["config"]["peer_instruments"] == [3]


def test_report_gives_the_machine_speed_before_and_after() -> None:
    config = BenchConfig(scenarios=(), speed_additions=20_000)
    speed = run_bench(config)["speed"]
    assert speed["loop_additions"] == 20_000
    assert speed["loop_s_before"] > 0
    assert speed["loop_s_after"] > 0
    console = Console(record=True, width=200)
    print_report(run_bench(config), console)
    assert "machine speed: a Python loop of 20,000 additions took" in console.export_text()


def test_every_scenario_name_runs_something() -> None:
    assert tuple(SCENARIOS) == SCENARIO_NAMES


def test_replay_reports_pipeline_and_bare_rates(report: dict) -> None:
    rows = report["scenarios"]["replay"]
    assert [(row["instruments"], row["ticks"]) for row in rows] == [(3, 699), (7, 700)]
    for row in rows:
        for run in ("pipeline", "bare"):
            assert row[run]["seconds"] > 0
            assert row[run]["ticks_per_s"] == pytest.approx(row["ticks"] / row[run]["seconds"])
        assert row["bare"]["outputs"] == row["ticks"]  # one keyed tick per tick
        pipeline = row["pipeline"]
        topics = pipeline["topics"]
        assert sum(topics.values()) == pipeline["outputs"] > 0
        assert pipeline["fills"] == topics["paper.orders.filled"] + topics["zerodha.orders.filled"] > 0
        assert pipeline["signals"] == topics["paper.signals.raw"] + topics["zerodha.signals.raw"]
        assert pipeline["signals"] == pipeline["fills"] + pipeline["rejected"]  # every validated signal fills
        assert row["pipeline_over_bare"] > 0
        assert row["rss_bytes"] > 0


def test_counting_sink_counts_what_replay_writes(tmp_path: Path) -> None:
    ticks = market(4, 2_000)
    tick_file = tmp_path / "ticks.jsonl"
    tick_file.write_bytes(b"\n".join(ticks.lines) + b"\n")
    configs = bench_configs(ticks.spec.tokens())
    summary = run_replay(tick_file, configs, tmp_path / "out", TRADING)
    written = _line_counts(tmp_path / "out")
    assert summary.topic_counts == written  # the replay's own summary, kept while streaming
    assert summary.lines == ticks.ticks

    sink = CountingSink(by_topic=True)
    run_timed(pipeline_flow(ticks.batches(), ticks.spec.tokens(), sink))

    assert sink.topics == written
    assert sink.total == sum(written.values())
    assert written["paper.orders.filled"] > 0
    assert written["zerodha.orders.filled"] > 0


def _trading_messages(params: PipelineParams) -> list[Outbound]:
    ticks = market(20, 4_000)
    got: list[list[Outbound]] = []
    run_main(pipeline_flow(ticks.batches(), ticks.spec.tokens(), TestingSink(got), params))
    return [message for batch in got for message in batch]


def _failed_rules(messages: list[Outbound]) -> Counter[str]:
    return Counter(
        rule
        for m in messages
        if m.topic.endswith(".signals.rejected")
        for rule, passed in m.envelope.data.risk_checks.items()
        if not passed
    )


def test_the_bench_workload_trades_and_only_the_rule_itself_rejects() -> None:
    messages = _trading_messages(TRADING)
    topics = Counter(m.topic for m in messages)
    for broker in ("paper", "zerodha"):
        validated = topics[f"{broker}.signals.validated"]
        assert topics[f"{broker}.orders.submitted"] == topics[f"{broker}.orders.filled"] == validated
        assert validated > topics[f"{broker}.signals.rejected"] > 0
        assert validated + topics[f"{broker}.signals.rejected"] == topics[f"{broker}.signals.raw"]
    # Opened limits: only selling what the account does not hold is refused, never a limit or the cash.
    assert set(_failed_rules(messages)) == {"no_short_selling"}


def test_with_design_defaults_the_bench_market_hits_the_limits() -> None:
    messages = _trading_messages(PipelineParams())
    rules = _failed_rules(messages)
    assert rules["max_daily_trades"] > 0  # why the bench opens them: 50 trades a day
    assert Counter(m.topic for m in messages)["paper.orders.filled"] <= 2 * 50  # two strategies


def test_interleaved_runs_take_turns_and_ratios_pair_the_same_round() -> None:
    ticks = market(2, 10)
    order: list[str] = []

    def maker(name: str, per_batch: int) -> Make:
        def make() -> tuple[Dataflow, CountingSink]:
            order.append(name)
            sink = CountingSink()
            return bare_flow(ticks.messages()[: 4 if name == "a" else 6], sink, per_batch=per_batch), sink

        return make

    a, b = interleaved_runs([(maker("a", 1), 1), (maker("b", 3), 2)], 3)
    assert order == ["a", "b", "a", "b", "a", "b"]
    assert (a["outputs"], b["outputs"]) == (4, 6)
    assert len(a["seconds_runs"]) == len(b["seconds_runs"]) == 3
    assert a["seconds"] == sorted(a["seconds_runs"])[1]
    # Round by round, not medians of each: 2/1, 4/1, 6/3.
    assert median_ratio([2.0, 4.0, 6.0], [1.0, 1.0, 3.0]) == 2.0


def test_bare_flow_emits_one_keyed_item_per_tick() -> None:
    ticks = market(2, 10)
    sink = CountingSink()
    run_timed(bare_flow(ticks.messages(), sink, per_batch=3))
    assert sink.total == 10


def test_memory_reports_shard_state_per_strategy_instrument(report: dict) -> None:
    for row in report["scenarios"]["memory"]:
        assert row["shard_keys"] == 1  # one shard
        assert row["instruments_in_state"] == row["instruments"]
        assert row["account_names"] == [
            "paper:bench_mean_reversion",
            "paper:bench_momentum",
            "zerodha:bench_mean_reversion",
            "zerodha:bench_momentum",
        ]
        assert row["strategy_instrument_pairs"] == 2 * row["instruments"]
        assert row["bytes_per_pair"] == pytest.approx(row["state_bytes"] / row["strategy_instrument_pairs"])
        assert row["instrument_bytes_per_pair"] > 0
        assert row["account_bytes_per_pair"] > 0


def test_scaling_compares_worker_layouts(report: dict) -> None:
    rows = report["scenarios"]["scaling"]
    layouts = [(row["workers"], row["groups"], row["shards"]) for row in rows]
    assert layouts == [(1, 1, 1), (1, 3, 2), (2, 3, 2)]
    assert rows[0]["speedup"] == pytest.approx(1.0)
    assert [len(row["seconds_runs"]) for row in rows] == [TINY.repeat] * 3  # one run per layout a round
    assert len({row["outputs"] for row in rows}) == 1  # same messages whatever the layout
    assert rows[0]["outputs"] > 0
    for row in rows:
        assert row["ticks"] == 600
        assert row["ticks_per_s"] == pytest.approx(600 / row["seconds"])
        assert row["seconds_with_startup"] >= row["seconds"] > 0
        assert row["processes"] == 1
        assert 0 < row["peak_rss_bytes"]


def test_peers_replay_fills_equal_the_reference_rule(report: dict) -> None:
    (row,) = report["scenarios"]["peers"]
    assert (row["instruments"], row["ticks"]) == (3, 900)
    replay, reference = row["replay"], row["reference"]
    assert reference["fills"] > 0
    assert (replay["buys"], replay["sells"]) == (reference["buys"], reference["sells"])
    assert row["fills_match"] is True
    # Paper only: no zerodha topic was written.
    assert all(name.startswith("paper.") for name in replay["outputs"])
    assert replay["peak_rss_bytes"] >= replay["largest_process_rss_bytes"] > 0
    assert replay["processes"] == 1  # a 900-tick tape is far below the size that replays on two
    assert replay["ticks_per_s"] == pytest.approx(900 / replay["seconds"])


def test_peers_replay_on_two_processes_is_compared_with_one(report: dict) -> None:
    assert report["scenarios"]["peers"][0]["one_process"] is None  # processes=False: no comparison
    config = BenchConfig(
        scenarios=("peers",), peer_instruments=(3,), peer_ticks=900, peer_processes=2, repeat=2
    )
    bench = run_bench(config)
    (row,) = bench["scenarios"]["peers"]
    replay, one = row["replay"], row["one_process"]
    assert replay["processes"] == 2
    assert len(replay["seconds_runs"]) == len(one["seconds_runs"]) == 2  # one of each per round
    assert one["fills"] == replay["fills"] == row["reference"]["fills"]
    ratios = [a / b for a, b in zip(one["seconds_runs"], replay["seconds_runs"], strict=True)]
    assert one["two_process_speedup"] == pytest.approx(sum(ratios) / 2)  # the median of two
    (check,) = [c for c in bench["targets"] if c["target"].startswith("peer_two_process_speedup")]
    assert check["measured"] == one["two_process_speedup"]
    assert check["threshold"] == 1.6


def test_targets_are_checked_for_what_ran(report: dict) -> None:
    checks = {check["target"].split(" (")[0]: check for check in report["targets"]}
    assert {"pipeline_over_bare", "state_bytes_per_strategy_instrument", "peer_peak_rss_mib"} <= checks.keys()
    assert "two_process_speedup" not in checks  # processes=False
    fills = checks["peer_fills_equal_reference"]
    assert fills["met"] is True
    assert fills["measured"] == fills["threshold"] == report["scenarios"]["peers"][0]["reference"]["fills"]
    assert checks["peer_peak_rss_mib"]["threshold"] == 175
    assert all(isinstance(check["met"], bool) for check in report["targets"])
    assert any("10x" in note for note in report["notes"])


@pytest.mark.slow
def test_two_processes_cluster() -> None:
    config = BenchConfig(scenarios=("scaling",), scaling_instruments=3, scaling_ticks=600)
    report = run_bench(config)
    rows = report["scenarios"]["scaling"]
    assert rows[-1]["processes"] == 2
    assert rows[-1]["outputs"] == rows[0]["outputs"] > 0
    assert rows[-1]["seconds"] > 0
    assert any(check["target"].startswith("two_process_speedup") for check in report["targets"])


@pytest.mark.integration
def test_live_scenario_measures_on_real_servers() -> None:
    config = BenchConfig(
        scenarios=("live",),
        live_ticks=600,
        live_rates=(300.0,),
        live_seconds=2,
        live_modes=("all-in-one",),
        live_floor_batches=200,
    )
    rows = run_bench(config)["scenarios"]["live"]
    assert [row["kind"] for row in rows] == ["raw_broker", "broker_floor", "sustained", "latency"]
    raw, floor, sustained, latency = rows
    assert raw["messages"] == 600
    # The floor paces the first offered rate for the run's seconds on each partition, and times each message.
    assert (floor["rate"], floor["seconds"], floor["aged_batches"]) == (300.0, 2, 200)
    for part in (floor["fresh"], floor["aged"]):
        assert part["messages"] == 600
        assert part["hop_ms"]["count"] == 600
        assert 0 < part["hop_ms"]["p50"] <= part["hop_ms"]["p99"]
        assert part["broker_cpu_per_s"] > 0
    assert raw["produce_per_s"] > 0
    assert raw["consume_per_s"] > 0
    assert sustained["ticks"] == 600
    assert sustained["ticks_per_s"] > 0
    assert sustained["fills"] > 0
    assert sustained["rss_kib"]["pipeline"] > 0
    assert latency["ticks"] > 0
    assert latency["tick_to_signal_ms"]["count"] > 0
    assert 0 < latency["tick_to_signal_ms"]["p50"] <= latency["tick_to_signal_ms"]["p99"]
    # The probe times exactly the feed's ticks (300 ticks/s for 2 s), none of the warm-up's.
    assert latency["broker_hop_ms"]["count"] == 600
    assert 0 < latency["broker_hop_ms"]["p50"] <= latency["broker_hop_ms"]["p99"]
    assert set(latency["rss_growth_kib"]) == {"pipeline"}
    assert latency["broker_cpu_per_s"] > 0


def test_replay_table_shows_signals_and_fills() -> None:
    def row(pipeline_extra: dict) -> dict:
        pipeline = {"seconds": 2.0, "ticks_per_s": 150_000.0, "outputs": 111_080, **pipeline_extra}
        bare = {"seconds": 2.5, "ticks_per_s": 120_000.0}
        return {"instruments": 100, "ticks": 300_000, "pipeline": pipeline, "bare": bare}

    rows = [row({"signals": 29_280, "fills": 26_110}), row({})]  # the second from a report before the counts
    for r in rows:
        r.update(pipeline_over_bare=1.25, rss_bytes=200 * 2**20)
    console = Console(record=True, width=200)
    console.print(replay_table(rows))
    lines = [line for line in console.export_text().splitlines() if "300,000" in line]
    cells = [[cell.strip() for cell in line.split("│")[1:-1]] for line in lines]
    common = ["100", "300,000", "2.00", "150,000", "111,080"]
    assert cells == [
        [*common, "29,280", "26,110", "2.50", "120,000", "125.0%", "200"],
        [*common, "-", "-", "2.50", "120,000", "125.0%", "200"],
    ]


def test_live_table_shows_the_broker_floor_and_the_broker_cpu() -> None:
    def hops(p50: float, p95: float, p99: float) -> dict[str, float]:
        return {"count": 10, "p50": p50, "p95": p95, "p99": p99, "max": p99}

    floor = {
        "kind": "broker_floor",
        "rate": 1000.0,
        "seconds": 5.0,
        "aged_batches": 5000,
        "aging_seconds": 3.0,
        "fresh": {"messages": 10, "hop_ms": hops(8.6, 15.0, 16.6), "broker_cpu_per_s": 0.23},
        "aged": {"messages": 10, "hop_ms": hops(21.7, 30.0, 37.0), "broker_cpu_per_s": 1.02},
    }
    latency = {
        "kind": "latency",
        "mode": "all-in-one",
        "rate": 1000.0,
        "seconds": 20.0,
        "tick_to_signal_ms": hops(7.8, 16.9, 89.8),
        "tick_to_fill_ms": hops(7.9, 17.0, 74.1),
        "broker_hop_ms": hops(7.8, 14.7, 17.4),
        "broker_cpu_per_s": 0.61,
        "rss_kib_end": {"pipeline": 102400},
        "rss_growth_kib": {"pipeline": 1024},
    }
    old_latency = {key: value for key, value in latency.items() if key != "broker_cpu_per_s"}
    console = Console(record=True, width=300)
    console.print(live_table([floor, latency, old_latency]))
    lines = [
        line for line in console.export_text().splitlines() if "broker floor" in line or "latency" in line
    ]
    cells = [[cell.strip() for cell in line.split("│")[1:-1]] for line in lines]
    assert cells == [
        ["broker floor", "fresh partition", "1,000", "-", "-", "-", "8.6 / 15.0 / 16.6", "0.23", "-"],
        ["broker floor", "after 5,000 batches", "1,000", "-", "-", "-", "21.7 / 30.0 / 37.0", "1.02", "-"],
        ["latency (20 s)", "all-in-one", "1,000", "-", "7.8 / 16.9 / 89.8", "7.9 / 17.0 / 74.1"]
        + ["7.8 / 14.7 / 17.4", "0.61", "100 (+1.0)"],
        ["latency (20 s)", "all-in-one", "1,000", "-", "7.8 / 16.9 / 89.8", "7.9 / 17.0 / 74.1"]
        + ["7.8 / 14.7 / 17.4", "-", "100 (+1.0)"],
    ]


def test_command_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    args = ["bench", "--quick", "--scenarios", "replay", "--instruments", "5", "--ticks", "500"]
    result = CliRunner().invoke(app, [*args, "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "vs bare" in result.output
    data = json.loads(out.read_text())
    assert data["config"]["instruments"] == [5]
    assert data["scenarios"]["replay"][0]["ticks"] == 500
    assert data["scenarios"]["replay"][0]["bare"]["outputs"] == 500


def test_command_runs_the_peers_scenario(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    args = ["bench", "--scenarios", "peers", "--peer-instruments", "2", "--peer-ticks", "400"]
    result = CliRunner().invoke(app, [*args, "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "Peers' tape" in result.output
    (row,) = json.loads(out.read_text())["scenarios"]["peers"]
    assert (row["instruments"], row["ticks"]) == (2, 400)
    assert row["fills_match"] is True


def test_command_rejects_unknown_scenarios(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["bench", "--scenarios", "warp", "--json", str(tmp_path / "b.json")])
    assert result.exit_code == 2
    assert "unknown: ['warp']" in result.output
    assert not (tmp_path / "b.json").exists()


def test_cli_import_loads_no_bench_engine_or_live_connectors() -> None:
    heavy = [
        "alpha_panda.bench.harness",
        "alpha_panda.bench.run",
        "alpha_panda.bench.scenarios",
        "dataflows.pipeline",
        "dataflows.live",
        "bytewax",
        "redis",
        "psycopg",
        "confluent_kafka",
    ]
    code = f"import sys, alpha_panda.cli; print([m for m in {heavy!r} if m in sys.modules])"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"


def test_peers_names_a_replay_that_failed(tmp_path: Path) -> None:
    tape = write_peer_tape(2, 10, tmp_path / "tape")
    tape.jsonl.unlink()
    with pytest.raises(RuntimeError, match=r"alpha-panda replay over .*ticks\.jsonl exited 2:"):
        run_replay_child(tape, tmp_path)
