"""A 100-combination sweep in one pass against separate replays, one per combination.

Workload: ``--ticks`` (e.g. 1M ticks of 100 instruments), momentum over a
10 x 10 grid (lookback_period 5..50, momentum_threshold 0.002..0.02),
every combination on every instrument, paper broker only. Times
``run_sweep`` once, then ``run_replay`` of ``--separate`` of the
combinations on their own (same ids, same parameters), checks that each of
those accounts' fills and snapshots are byte-identical to the sweep's, and
estimates 100 separate replays as the mean separate time x 100.

    .venv/bin/python bench/sweep_vs_replays.py --ticks /tmp/tape-100-1000000/ticks.jsonl \
        --out /tmp/sweep-bench
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import orjson

from alpha_panda.replay import run_replay
from alpha_panda.sweep import combinations, instruments_in, run_sweep, sweep_configs
from dataflows.pipeline import PipelineParams

GRID = {
    "lookback_period": list(range(5, 51, 5)),
    "momentum_threshold": [round(0.002 * i, 3) for i in range(1, 11)],
}


def account_lines(directory: Path, topic: str, strategy_id: str) -> list[bytes]:
    """The lines of ``topic`` in a replay directory that belong to one account."""
    path = directory / f"{topic}.jsonl"
    if not path.exists():
        return []
    return [line for line in path.read_bytes().splitlines() if orjson.loads(line)["key"] == strategy_id]


def main() -> None:
    """Run both, check equality, print and write the timings."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--ticks", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--separate", type=int, nargs="*", default=[0, 55, 99])
    args = parser.parse_args()
    params = PipelineParams(brokers=("paper",))
    start = time.perf_counter()
    result = run_sweep(args.ticks, "momentum", GRID, args.out / "sweep", params)
    sweep_s = time.perf_counter() - start
    count = len(result.rows)
    print(f"sweep of {count} combinations over {result.ticks:,} ticks: {sweep_s:.1f} s", flush=True)
    tokens = instruments_in(args.ticks)
    combos = combinations("momentum", GRID)
    separate = {}
    for index in args.separate:
        combo = combos[index]
        start = time.perf_counter()
        out = args.out / f"separate-{index}"
        run_replay(args.ticks, sweep_configs("momentum", [combo], tokens), out, params)
        separate[combo.id] = time.perf_counter() - start
        for topic in ("paper.orders.filled", "paper.pnl.snapshots"):
            mine = account_lines(out, topic, combo.id)
            theirs = account_lines(args.out / "sweep" / "replay", topic, combo.id)
            if mine != theirs:
                msg = f"{combo.id} {topic}: separate replay differs from the sweep"
                raise SystemExit(msg)
        took = separate[combo.id]
        print(f"separate replay of {combo.id}: {took:.1f} s (outputs equal the sweep's)", flush=True)
    mean = sum(separate.values()) / len(separate)
    summary = {
        "ticks": result.ticks,
        "combinations": len(result.rows),
        "sweep_seconds": sweep_s,
        "separate_seconds": separate,
        "separate_100_estimate_seconds": mean * len(combos),
        "speedup": mean * len(combos) / sweep_s,
    }
    (args.out / "bench.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
