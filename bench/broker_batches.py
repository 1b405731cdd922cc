"""How the local broker's cost grows with the record batches a partition holds.

    .venv/bin/python bench/broker_batches.py [BATCHES ...]     (default: 0 5000 20000)

For each count, on one throwaway local stack: a fresh one-partition topic is
filled with that many messages, once as one-message record batches (what a
feed pacing single ticks leaves behind) and once in bulk (few large
batches). Then a plain producer paces 500 messages/s for 4 s while a plain
consumer at the log end times each message's hop (Kafka create time to
arrival). Prints the broker's CPU seconds per second of the paced run and
the hop's p50/p99 for each. Both clients use the pipeline's settings.
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition

from alpha_panda.bench.scenarios.live import _cpu_s
from alpha_panda.localstack import LocalStack
from connectors.kafka.admin import create_topics
from connectors.kafka.config import consumer_config, producer_config
from connectors.kafka.offsets import log_end
from connectors.localstack import KAFKA

RATE = 500
SECONDS = 4
PAYLOAD = b"x" * 200


def fill(bootstrap: str, topic: str, count: int, *, one_per_batch: bool) -> None:
    """Produce ``count`` messages to ``topic``: one per record batch, or in bulk."""
    extra = {"linger.ms": 0, "batch.num.messages": 1} if one_per_batch else {"linger.ms": 50}
    producer = Producer({**producer_config(bootstrap), **extra})
    for _ in range(count):
        while True:
            try:
                producer.produce(topic, PAYLOAD)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    if producer.flush(300):
        msg = f"{topic}: not every message was acknowledged"
        raise SystemExit(msg)


def paced(bootstrap: str, topic: str, broker_pid: int) -> tuple[float, list[float]]:
    """Pace ``RATE`` messages/s for ``SECONDS`` to ``topic``: the broker's CPU/s and the sorted hops (ms)."""
    consumer = Consumer(consumer_config(bootstrap))
    consumer.assign([TopicPartition(topic, 0, log_end(bootstrap, topic, 0, timeout_s=120))])
    hops: list[float] = []
    stop = threading.Event()

    def follow() -> None:
        while not stop.is_set():
            message = consumer.poll(0.05)
            if message is not None and message.error() is None:
                hops.append(time.time() * 1000 - message.timestamp()[1])

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    producer = Producer(producer_config(bootstrap))
    producer.produce(topic, b"warm-up")
    producer.flush(30)
    time.sleep(1)
    hops.clear()
    cpu, start = _cpu_s(broker_pid), time.perf_counter()
    for i in range(RATE * SECONDS):
        producer.produce(topic, PAYLOAD)
        producer.poll(0)
        while (ahead := start + (i + 1) / RATE - time.perf_counter()) > 0:
            time.sleep(min(ahead, 0.001))
    producer.flush(30)
    cpu_per_s = (_cpu_s(broker_pid) - cpu) / (time.perf_counter() - start)
    deadline = time.monotonic() + 30
    while len(hops) < RATE * SECONDS and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    thread.join()
    consumer.close()
    return cpu_per_s, sorted(hops)


def main(counts: list[int]) -> None:
    """One stack; for each count, both fills and a paced run on each."""
    stack = LocalStack(Path(tempfile.mkdtemp(prefix="broker-batches-")))
    urls = stack.up()
    try:
        broker = stack.process(KAFKA)
        if broker is None:
            msg = "the local broker is not running"
            raise SystemExit(msg)
        for count in counts:
            for one_per_batch in (True, False):
                topic = f"batches-{count}-{'single' if one_per_batch else 'bulk'}"
                create_topics(urls.kafka, [topic], partitions=1, retention_ms=3_600_000)
                started = time.perf_counter()
                fill(urls.kafka, topic, count, one_per_batch=one_per_batch)
                filled = time.perf_counter() - started
                cpu, hops = paced(urls.kafka, topic, broker.pid)
                p50, p99 = hops[len(hops) // 2], hops[int(0.99 * len(hops))]
                shape = "one-message batches" if one_per_batch else "bulk"
                print(
                    f"{count:>7,} messages, {shape:<19} (filled in {filled:5.1f} s): broker CPU {cpu:.2f} s/s"
                    f" at {RATE} msgs/s; hop p50 {p50:.1f} ms, p99 {p99:.1f} ms ({len(hops)} timed)",
                    flush=True,
                )
    finally:
        stack.down()


if __name__ == "__main__":
    main([int(arg) for arg in sys.argv[1:]] or [0, 5_000, 20_000])
