"""RSS of the all-in-one pipeline over a sustained run (issue 6's memory-growth figure).

Usage: .venv/bin/python bench/soak_rss.py [--rate 5000] [--seconds 600]
Prints RSS (MiB) every 10 s and the growth from the first sample after
warm-up to the end; the market is the simulator at --rate ticks/s.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alpha_panda import orchestration
from alpha_panda.bench.scenarios.live import INSTRUMENTS, _rss_kib, _Stack


def main() -> None:
    """Run the soak and print the RSS samples and the growth."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=5000)
    parser.add_argument("--seconds", type=float, default=600)
    args = parser.parse_args()
    world = _Stack()
    try:
        world.start(["pipeline"])
        world.warm_up(["pipeline"])
        env = orchestration.simulated_feed_env(args.rate, INSTRUMENTS, int(args.rate * args.seconds))
        orchestration.start_dataflow(world.stack, "market_feed", world.urls, env=env, recovery=False)
        pid = world.stack.process("pipeline").pid  # type: ignore[union-attr]
        samples = []
        start = time.monotonic()
        while time.monotonic() - start < args.seconds:
            time.sleep(10)
            samples.append((round(time.monotonic() - start), _rss_kib(pid) / 1024))
            print(f"{samples[-1][0]:4d} s  RSS {samples[-1][1]:7.1f} MiB", flush=True)
        growth = samples[-1][1] - samples[0][1]
        lag = world.lag(["pipeline"])
        print(
            json.dumps(
                {
                    "rate": args.rate,
                    "seconds": args.seconds,
                    "rss_mib": samples,
                    "growth_mib": growth,
                    "lag_at_end": lag,
                }
            )
        )
    finally:
        world.close()


if __name__ == "__main__":
    main()
