"""Run the chosen scenarios and assemble the report (the JSON ``alpha-panda bench`` writes)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from alpha_panda.bench.config import BenchConfig
from alpha_panda.bench.harness import SOURCE_NOTE
from alpha_panda.bench.machine import hardware, loop_seconds, software
from alpha_panda.bench.scenarios import Log
from alpha_panda.bench.scenarios.memory import memory_scenario
from alpha_panda.bench.scenarios.peers import peers_scenario
from alpha_panda.bench.scenarios.replay import replay_scenario
from alpha_panda.bench.scenarios.scaling import scaling_scenario
from alpha_panda.bench.targets import NOTES, check_targets

Scenario = Callable[[BenchConfig, Log], list[dict[str, Any]]]


def _live(config: BenchConfig, log: Log) -> list[dict[str, Any]]:
    # Imported here: it needs the local stack (Kafka, Redis and Postgres clients).
    from alpha_panda.bench.scenarios.live import live_scenario

    return live_scenario(config, log)


SCENARIOS: dict[str, Scenario] = {
    "replay": replay_scenario,
    "memory": memory_scenario,
    "scaling": scaling_scenario,
    "peers": peers_scenario,
    "live": _live,
}
"""Every scenario by name, in :data:`alpha_panda.bench.config.SCENARIO_NAMES` order (a test checks)."""


def run_bench(config: BenchConfig, log: Log = lambda _line: None) -> dict[str, Any]:
    """Run the chosen scenarios in order; return the report.

    Raises:
        ValueError: a scenario name that is not among :data:`SCENARIOS`.
    """
    unknown = [name for name in config.scenarios if name not in SCENARIOS]
    if unknown:
        msg = f"scenarios must be among {list(SCENARIOS)}; unknown: {unknown}"
        raise ValueError(msg)
    additions = config.speed_additions
    speed_before = loop_seconds(additions)
    results = {name: SCENARIOS[name](config, log) for name in config.scenarios}
    speed_after = loop_seconds(additions)
    return {
        "created": datetime.now(UTC).isoformat(),
        "hardware": hardware(),
        "speed": {"loop_additions": additions, "loop_s_before": speed_before, "loop_s_after": speed_after},
        "software": software(),
        "method": {
            "source": SOURCE_NOTE,
            "timer": "time.perf_counter around run_main/cluster_main only (data generation excluded); "
            "peers: the whole alpha-panda replay child process",
            "statistic": f"median of {config.repeat} run(s), layouts in turns",
            "ratios": "replay and scaling run each layout once a round; ratios are medians of the rounds'",
            "strategies": "momentum + mean_reversion on every instrument, brokers paper + zerodha (dry_run), "
            "risk limits opened and a cash of 1e9 so that signals fill; "
            "peers: one momentum strategy (lookback 20, threshold 0.01, size 1), paper only, limits opened",
            "speed": "the best of 3 plain Python loops of loop_additions additions, before and after",
            "state": "pickled ShardState as stored by Bytewax recovery, one epoch per run",
        },
        "config": {
            "scenarios": list(config.scenarios),
            "instruments": list(config.instruments),
            "ticks": config.ticks,
            "repeat": config.repeat,
            "scaling_instruments": config.scaling_instruments,
            "scaling_ticks": config.scaling_ticks,
            "processes": config.processes,
            "peer_instruments": list(config.peer_instruments),
            "peer_ticks": config.peer_ticks,
        },
        "scenarios": results,
        "targets": check_targets(results),
        "notes": list(NOTES),
    }
