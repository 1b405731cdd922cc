"""Profile the replay pipeline (1 worker) at N instruments; the flow is the one ``alpha-panda bench`` times.

Usage (from the repo root)::

    .venv/bin/py-spy record -r 250 -f raw -o out/replay.folded -- \
        .venv/bin/python bench/profile_replay.py --instruments 100 --ticks 200000
    .venv/bin/python bench/profile_replay.py --summarise out/replay.folded
    .venv/bin/python bench/profile_replay.py --cprofile --instruments 100 --ticks 100000

Only samples under ``timed_run`` (the ``run_main`` call) are summarised, so
data generation is excluded.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
from collections import Counter
from pathlib import Path

from alpha_panda.bench.harness import CountingSink, market, pipeline_flow, run_timed


def timed_run(instruments: int, ticks: int) -> None:
    """Generate ticks, then run the pipeline once and print ticks/s."""
    simulated = market(instruments, ticks)
    sink = CountingSink()
    flow = pipeline_flow(simulated.batches(), simulated.spec.tokens(), sink)
    seconds = _run(flow)
    rate = simulated.ticks / seconds
    print(f"{simulated.ticks:,} ticks in {seconds:.2f} s: {rate:,.0f} ticks/s, {sink.total:,} messages")


def _run(flow: object) -> float:
    return run_timed(flow)  # type: ignore[arg-type]


def _function(frame: str) -> str:
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rsplit(':', 1)[0]})" if where else name


def summarise(folded: Path, top: int = 30) -> None:
    """Print self and inclusive time (% of samples inside ``_run``) per function."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in folded.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        starts = [i for i, f in enumerate(frames) if f.startswith("_run (")]
        if not starts:
            continue
        # Aggregate by function: "name (file:line)" -> "name (file)".
        frames = [_function(f) for f in frames[starts[0] + 1 :]]
        n = int(count)
        total += n
        if not frames:
            own["<Bytewax engine (Rust), no Python frame above run_main>"] += n
            continue
        own[frames[-1]] += n
        for name in set(frames):
            inclusive[name] += n
    print(f"{total} samples inside run_main\n\nSELF")
    for name, n in own.most_common(top):
        print(f"{n / total:6.1%}  {name}")
    print("\nINCLUSIVE")
    for name, n in inclusive.most_common(top):
        print(f"{n / total:6.1%}  {name}")


def main() -> None:
    """Command line: run (under py-spy), summarise a folded file, or run under cProfile."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--instruments", type=int, default=100)
    parser.add_argument("--ticks", type=int, default=200_000)
    parser.add_argument("--summarise", type=Path)
    parser.add_argument("--cprofile", action="store_true")
    args = parser.parse_args()
    if args.summarise:
        summarise(args.summarise)
    elif args.cprofile:
        simulated = market(args.instruments, args.ticks)
        flow = pipeline_flow(simulated.batches(), simulated.spec.tokens(), CountingSink())
        profile = cProfile.Profile()
        profile.runcall(_run, flow)
        stats = pstats.Stats(profile).sort_stats("tottime")
        stats.print_stats(35)
    else:
        timed_run(args.instruments, args.ticks)


if __name__ == "__main__":
    main()
