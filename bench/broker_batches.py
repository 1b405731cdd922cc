"""How the local broker's cost grows with the record batches a partition holds.

    .venv/bin/python bench/broker_batches.py [BATCHES ...]     (default: 0 5000 20000)

For each count, on one throwaway local stack: a fresh one-partition topic is
filled with that many messages, once as one-message record batches (what a
feed pacing single ticks leaves behind) and once in bulk (few large
batches). Then a plain producer paces 500 messages/s for 4 s while a plain
consumer at the log end times each message's hop (Kafka create time to
arrival). Prints the broker's CPU seconds per second of the paced run and
the hop's p50/p99 for each. Both clients use the pipeline's settings; the
fill and the paced run are the live bench's broker floor
(:mod:`alpha_panda.bench.scenarios.live`), swept over the count.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from alpha_panda.bench.scenarios.live import cpu_seconds, fill_topic, paced_hops
from alpha_panda.localstack import LocalStack
from connectors.kafka.admin import create_topics
from connectors.localstack import KAFKA

RATE = 500
SECONDS = 4


def main(counts: list[int]) -> None:
    """One stack; for each count, both fills and a paced run on each."""
    stack = LocalStack(Path(tempfile.mkdtemp(prefix="broker-batches-")))
    urls = stack.up()
    try:
        broker = stack.process(KAFKA)
        if broker is None:
            msg = "the local broker is not running"
            raise SystemExit(msg)
        pid = broker.pid
        for count in counts:
            for one_per_batch in (True, False):
                topic = f"batches-{count}-{'single' if one_per_batch else 'bulk'}"
                create_topics(urls.kafka, [topic], partitions=1, retention_ms=3_600_000)
                started = time.perf_counter()
                fill_topic(urls.kafka, topic, count, one_per_batch=one_per_batch)
                filled = time.perf_counter() - started
                run = paced_hops(
                    urls.kafka, topic, RATE, SECONDS, lambda: cpu_seconds(pid), end_timeout_s=120
                )
                hops = run["hop_ms"]
                shape = "one-message batches" if one_per_batch else "bulk"
                print(
                    f"{count:>7,} messages, {shape:<19} (filled in {filled:5.1f} s): broker CPU"
                    f" {run['broker_cpu_per_s']:.2f} s/s at {RATE} msgs/s; hop p50 {hops['p50']:.1f} ms,"
                    f" p99 {hops['p99']:.1f} ms ({hops['count']} timed)",
                    flush=True,
                )
    finally:
        stack.down()


if __name__ == "__main__":
    main([int(arg) for arg in sys.argv[1:]] or [0, 5_000, 20_000])
