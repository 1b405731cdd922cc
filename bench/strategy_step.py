"""Per-tick cost of the trading shard, in process: decoded ticks in, messages out.

Decodes the first ``--ticks`` lines of a tick file once (not timed), then
times ``TradingShard.on_batch`` over batches of 4,096 with the bench's
strategy set (momentum and mean reversion on every instrument, both
brokers). Prints the best of ``--repeat`` runs in microseconds per tick and
a fingerprint of the outputs, so two versions can be checked for equal
results before their times are compared.

    .venv/bin/python bench/strategy_step.py --file /tmp/tape-100-1000000/ticks.jsonl --ticks 200000
"""

from __future__ import annotations

import argparse
import hashlib
import time
from pathlib import Path

from alpha_panda.bench import bench_configs
from dataflows.clock import event_time_clock
from dataflows.execution_routes import Executor
from dataflows.pipeline import PipelineParams
from operators.fills import FillSimulator
from operators.portfolio import Portfolio
from operators.risk import RiskFilter
from operators.shard import TradingShard
from schemas.codec import TimeCache, decode_tick_batch, encode


def main() -> None:
    """Run the loop; print µs per tick and the output fingerprint."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--file", type=Path, required=True)
    parser.add_argument("--ticks", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with args.file.open("rb") as handle:
        lines = [next(handle).rstrip(b"\n") for _ in range(args.ticks)]
    batches = []
    times = TimeCache()
    for i in range(0, len(lines), 4096):
        decoded = decode_tick_batch(lines[i : i + 4096], times)
        batches.append((decoded.ticks, decoded.times))
    tokens = sorted({t.data.instrument_token for ticks, _ in batches for t in ticks})
    params = PipelineParams()
    best = float("inf")
    digest = ""
    for _ in range(args.repeat):
        executor = Executor(FillSimulator(params.fills), params.routes(), event_time_clock, params.service)
        shard = TradingShard(
            bench_configs(tokens),
            params.shard_config(),
            RiskFilter(params.risk),
            Portfolio(params.portfolio),
            executor.execute,
            event_time_clock,
        )
        outputs = []
        start = time.perf_counter()
        for ticks, at in batches:
            outputs.append(shard.on_batch(ticks, at))
        elapsed = time.perf_counter() - start
        best = min(best, elapsed)
        sha = hashlib.sha256()
        for out in outputs:
            for message in out:
                sha.update(message.topic.encode())
                sha.update(encode(message.envelope))
        digest = sha.hexdigest()[:16]
        count = sum(len(o) for o in outputs)
    print(
        f"{len(lines)} ticks, {len(tokens)} instruments: best {best * 1e6 / len(lines):.3f} us/tick "
        f"({len(lines) / best:,.0f} ticks/s), {count} messages, sha256 {digest}"
    )


if __name__ == "__main__":
    main()
