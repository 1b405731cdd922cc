"""The ``live`` bench scenario: the pipeline on the local stack, end to end.

Measures, each on a fresh local stack (Tansu, Redis, PostgreSQL):

- raw broker throughput: the same confluent-kafka client producing and
  consuming on the same broker, no pipeline;
- sustained throughput, per mode (all-in-one ``pipeline`` or the four
  per-stage flows): ticks produced as fast as possible, timed from the first
  produce until the ledger stops growing and every flow has consumed its input;
- latency at fixed offered rates: ``dataflows.market_feed`` paces a simulated
  market; tick-to-signal and tick-to-fill are the signal's / fill's envelope
  creation time (wall clock, in the flow) minus the tick's Kafka create time,
  joined by correlation id; p50/p95/p99 in milliseconds;
- the broker hop in the same latency run: a plain consumer with the
  pipeline's settings, in the bench process, follows ``market.ticks`` and
  times each tick's arrival against its Kafka create time. No pipeline can
  be faster than this hop, since its ticks take the same one;
- RSS of every dataflow process at the start and end of each latency run,
  and the broker's CPU time per second of the run;
- the broker's floor: a plain producer pacing messages at the first offered
  rate and a plain consumer timing their hop, on a fresh one-partition topic
  and on one that already holds ``live_floor_batches`` record batches of one
  message each (what a paced live feed leaves behind), with the broker's CPU
  time per second of each. Tansu 0.6's in-memory storage pays per record
  batch held, so this row shows how much of the live figures is the broker's.

Every tick the bench produces itself (warm-up, sustained runs) is dated from
the wall clock at the moment it is built, like the live feed's: the
pipeline dead-letters a tick dated more than ``MAX_TICK_SKEW_S`` after the
newest one it has seen, so a warm-up from the simulator's default 2024
start would send every later live tick to ``market.ticks.dlq``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, Producer, TopicPartition

from alpha_panda import orchestration
from alpha_panda.localstack import LocalStack
from connectors.kafka.admin import create_topics, list_topics
from connectors.kafka.config import consumer_config, producer_config
from connectors.kafka.delivery import DeliveryReport, produce_message
from connectors.kafka.offsets import log_end
from connectors.kafka.records import consume_all, produce
from connectors.localstack import KAFKA, StackUrls
from connectors.postgres import ledger_counts
from connectors.simulator import MarketSpec, simulate_lines
from dataflows.settings import Settings
from schemas.topics import MARKET_TICKS, ORDERS_FILLED, SIGNALS_RAW, broker_topic

Log = Callable[[str], None]
INSTRUMENTS = 20
FLOW_ENV = {"MAX_DAILY_TRADES": "1000000"}


def _live_market(ticks_per_instrument: int, seed: int = 7) -> list[bytes]:
    """Simulated tick lines (no newline) of the bench's instruments, dated from now."""
    spec = MarketSpec(
        instruments=INSTRUMENTS, ticks_per_instrument=ticks_per_instrument, seed=seed, start=datetime.now(UTC)
    )
    return [line.rstrip(b"\n") for line in simulate_lines(spec)]


def _percentiles(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {"count": 0}
    ordered = sorted(values)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {
        "count": len(ordered),
        "p50": pick(0.50),
        "p95": pick(0.95),
        "p99": pick(0.99),
        "max": ordered[-1],
    }


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return 0
    return 0


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used so far; 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class _Stack:
    """A throwaway local stack with the demo strategies, for one measurement."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="alpha-panda-bench-"))
        self.stack = LocalStack(self.dir)
        self.urls: StackUrls = self.stack.up()
        settings = Settings(kafka_bootstrap_servers=self.urls.kafka, data_dir=self.dir)
        tokens = MarketSpec(instruments=INSTRUMENTS).tokens()
        orchestration.bootstrap(self.urls, settings, orchestration.demo_strategy_rows(tokens))

    def start(self, flows: Sequence[str]) -> None:
        for name in flows:
            orchestration.start_dataflow(self.stack, name, self.urls, env=FLOW_ENV)

    def lag(self, flows: Sequence[str]) -> int:
        return sum(sum(orchestration.consumer_lag(self.stack, self.urls, n).values()) for n in flows)

    def positions(self, flows: Sequence[str]) -> int:
        return sum(
            sum(orchestration.recovered_offsets(orchestration.recovery_dir(self.stack, n)).values())
            for n in flows
        )

    def warm_up(self, flows: Sequence[str], timeout_s: float = 60) -> None:
        """Produce a few ticks and wait until every flow has snapshotted past them."""
        lines = _live_market(3, seed=99)
        produce(self.urls.kafka, MARKET_TICKS, [(None, line) for line in lines])
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(orchestration.recovered_offsets(orchestration.recovery_dir(self.stack, n)) for n in flows):
                if self.lag(flows) == 0:
                    return
            time.sleep(0.3)
        msg = f"flows {list(flows)} did not start consuming within {timeout_s:.0f} s"
        raise TimeoutError(msg)

    def broker_cpu_s(self) -> float:
        """CPU seconds the stack's broker has used so far (0 for an external one)."""
        broker = self.stack.process(KAFKA)
        return cpu_seconds(broker.pid) if broker is not None else 0.0

    def rss(self, flows: Sequence[str]) -> dict[str, int]:
        return {n: _rss_kib(p.pid) for n in flows if (p := self.stack.process(n)) is not None}

    def close(self) -> None:
        orchestration.stop_dataflows(self.stack)
        self.stack.down()
        shutil.rmtree(self.dir, ignore_errors=True)


def raw_broker(ticks: int) -> dict[str, Any]:
    """Produce then consume ``ticks`` tick-sized messages with the pipeline's client settings."""
    lines = _live_market(ticks // INSTRUMENTS)
    world = _Stack()
    try:
        items = [(str(orjson.loads(line)["data"]["instrument_token"]), line) for line in lines]
        start = time.perf_counter()
        produce(world.urls.kafka, MARKET_TICKS, items)
        produced = time.perf_counter() - start
        start = time.perf_counter()
        records = consume_all(world.urls.kafka, MARKET_TICKS, 60)
        consumed = time.perf_counter() - start
    finally:
        world.close()
    return {
        "kind": "raw_broker",
        "messages": len(items),
        "produce_per_s": len(items) / produced,
        "consume_per_s": len(records) / consumed,
    }


def sustained(mode: str, flows: Sequence[str], ticks: int, log: Log) -> dict[str, Any]:
    """Ticks/s from the first produce until the ledger is complete and all input consumed."""
    lines = _live_market(ticks // INSTRUMENTS, seed=21)
    items = [(str(orjson.loads(line)["data"]["instrument_token"]), line) for line in lines]
    world = _Stack()
    try:
        world.start(flows)
        world.warm_up(flows)
        before = ledger_counts(world.urls.postgres)["fills"]
        start = time.perf_counter()
        produce(world.urls.kafka, MARKET_TICKS, items)
        last_change, last_fills = time.perf_counter(), -1
        deadline = start + 600
        while time.perf_counter() < deadline:
            fills = ledger_counts(world.urls.postgres)["fills"]
            if fills != last_fills:
                last_fills, last_change = fills, time.perf_counter()
            elif world.lag(flows) == 0 and time.perf_counter() - last_change > 3:
                break
            time.sleep(0.25)
        seconds = last_change - start
        log(f"live {mode}: {len(items):,} ticks -> {last_fills - before:,} fills in {seconds:.1f} s")
        return {
            "kind": "sustained",
            "mode": mode,
            "ticks": len(items),
            "fills": last_fills - before,
            "seconds": seconds,
            "ticks_per_s": len(items) / seconds,
            "rss_kib": world.rss(flows),
        }
    finally:
        world.close()


class _HopProbe:
    """Times every new message of ``topic`` from its Kafka create time to its arrival here, in ms.

    Its own consumer (the pipeline's settings), each partition assigned at
    its current end, polled on a daemon thread: only messages produced after
    :meth:`start` returns are timed.
    """

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._bootstrap = bootstrap
        self._topic = topic
        self._consumer = Consumer(consumer_config(bootstrap))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hop-probe", daemon=True)
        self.hops_ms: list[float] = []

    def start(self, end_timeout_s: float = 10.0) -> _HopProbe:
        """Assign every partition at its end (each read within ``end_timeout_s``), then start polling."""
        partitions = list_topics(self._bootstrap)[self._topic]
        ends = [log_end(self._bootstrap, self._topic, p, end_timeout_s) for p in range(partitions)]
        self._consumer.assign([TopicPartition(self._topic, p, end) for p, end in enumerate(ends)])
        self._thread.start()
        return self

    def wait_for(self, count: int, timeout_s: float) -> None:
        """Return once ``count`` messages were timed, or after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while len(self.hops_ms) < count and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop(self) -> list[float]:
        """Stop polling, close the consumer; return the hops seen, in arrival order."""
        self._stop.set()
        self._thread.join(timeout=10)
        return self.hops_ms

    def _run(self) -> None:
        record = self.hops_ms.append
        try:
            while not self._stop.is_set():
                # poll, not consume(n, timeout): that waits for n messages or the timeout.
                message = self._consumer.poll(0.05)
                if message is None:
                    continue
                now_ms = time.time() * 1000
                kind, created_ms = message.timestamp()
                if message.error() is None and kind != 0:
                    record(now_ms - created_ms)
        finally:
            self._consumer.close()


def _ms(later: datetime, earlier_ms: int) -> float:
    return later.timestamp() * 1000 - earlier_ms


def latency(mode: str, flows: Sequence[str], rate: float, seconds: float, log: Log) -> dict[str, Any]:
    """Tick-to-signal and tick-to-fill latency with ``market_feed`` offering ``rate`` ticks/s."""
    world = _Stack()
    try:
        world.start(flows)
        world.warm_up(flows)
        rss_start = world.rss(flows)
        limit = int(rate * seconds)
        env = orchestration.simulated_feed_env(rate, INSTRUMENTS, limit)
        probe = _HopProbe(world.urls.kafka, MARKET_TICKS).start()
        broker_cpu, started = world.broker_cpu_s(), time.monotonic()
        try:
            orchestration.start_dataflow(world.stack, "market_feed", world.urls, env=env, recovery=False)
            deadline = time.monotonic() + seconds + 120
            while world.stack.process("market_feed") is not None and time.monotonic() < deadline:
                time.sleep(0.5)
            while world.lag(flows) and time.monotonic() < deadline:
                time.sleep(0.5)
            time.sleep(2)
        finally:
            hops = probe.stop()  # before the stack goes down, whatever happened
        broker_cpu_per_s = (world.broker_cpu_s() - broker_cpu) / (time.monotonic() - started)
        rss_end = world.rss(flows)
        produced: dict[str, int] = {}
        for record in consume_all(world.urls.kafka, MARKET_TICKS, 30):
            if record.value and record.timestamp_ms:
                envelope = orjson.loads(record.value)
                if "id" in envelope:
                    produced[envelope["id"]] = record.timestamp_ms
        stats: dict[str, Any] = {}
        for label, stage in (("tick_to_signal_ms", SIGNALS_RAW), ("tick_to_fill_ms", ORDERS_FILLED)):
            values = []
            for record in consume_all(world.urls.kafka, broker_topic("paper", stage), 30):
                envelope = orjson.loads(record.value or b"{}")
                sent = produced.get(envelope.get("correlation_id", ""))
                if sent is not None:
                    values.append(_ms(datetime.fromisoformat(envelope["ts"]), sent))
            stats[label] = _percentiles(values)
        stats["broker_hop_ms"] = _percentiles(hops)
        p99 = stats["tick_to_fill_ms"].get("p99", float("nan"))
        hop_p99 = stats["broker_hop_ms"].get("p99", float("nan"))
        hop = f"the broker hop's {hop_p99:.1f} ms"
        log(f"live {mode} at {rate:,.0f} ticks/s: tick-to-fill p99 {p99:.1f} ms, {hop}")
        return {
            "kind": "latency",
            "mode": mode,
            "rate": rate,
            "seconds": seconds,
            "ticks": len(produced),
            **stats,
            "broker_cpu_per_s": broker_cpu_per_s,
            "rss_kib_start": rss_start,
            "rss_kib_end": rss_end,
            "rss_growth_kib": {n: rss_end.get(n, 0) - rss_start.get(n, 0) for n in rss_start},
        }
    finally:
        world.close()


FLOOR_TOPICS = ("bench.floor.fresh", "bench.floor.aged")
"""The broker floor's topics (one partition each), made by the bench on its own throwaway stack."""


PAYLOAD = b"x" * 200
"""A message of about a tick's size."""


def fill_topic(bootstrap: str, topic: str, count: int, *, one_per_batch: bool = True) -> None:
    """Produce ``count`` tick-sized messages to ``topic``, one per record batch or in bulk.

    One per batch is what a feed pacing single ticks leaves behind; bulk
    writes a few large batches.
    """
    extra = {"linger.ms": 0, "batch.num.messages": 1} if one_per_batch else {"linger.ms": 50}
    producer = Producer({**producer_config(bootstrap), **extra})
    report = DeliveryReport()
    for _ in range(count):
        produce_message(producer, topic, None, PAYLOAD, report)
        producer.poll(0)
    report.raise_failures("bench broker floor", producer.flush(300))


def paced_hops(
    bootstrap: str,
    topic: str,
    rate: float,
    seconds: float,
    broker_cpu_s: Callable[[], float],
    *,
    end_timeout_s: float = 10.0,
) -> dict[str, Any]:
    """Hop percentiles and broker CPU/s of ``rate`` messages/s on ``topic`` for ``seconds``, alone.

    ``broker_cpu_s``: the broker's CPU seconds so far; ``end_timeout_s``: how
    long reading the partition's end may take (long on an aged partition).
    """
    producer = Producer(producer_config(bootstrap))
    report = DeliveryReport()
    produce_message(producer, topic, None, b"warm-up", report)  # the producer's id, before timing
    producer.flush(30)
    probe = _HopProbe(bootstrap, topic).start(end_timeout_s)
    count = int(rate * seconds)
    try:
        time.sleep(1)  # the probe's first fetch
        cpu, start = broker_cpu_s(), time.perf_counter()
        for i in range(count):
            produce_message(producer, topic, None, PAYLOAD, report)
            producer.poll(0)
            due = start + (i + 1) / rate
            while (ahead := due - time.perf_counter()) > 0:
                time.sleep(min(ahead, 0.001))
        undelivered = producer.flush(30)
        elapsed = time.perf_counter() - start
        cpu_per_s = (broker_cpu_s() - cpu) / elapsed
        probe.wait_for(count, 30)
    finally:
        hops = probe.stop()
    report.raise_failures("bench broker floor", undelivered)
    return {"messages": count, "hop_ms": _percentiles(hops), "broker_cpu_per_s": cpu_per_s}


def broker_floor(rate: float, seconds: float, aged_batches: int, log: Log) -> dict[str, Any]:
    """The broker hop alone, on a fresh partition and on one holding ``aged_batches`` one-message batches."""
    world = _Stack()
    try:
        bootstrap = world.urls.kafka
        fresh, aged = FLOOR_TOPICS
        create_topics(bootstrap, list(FLOOR_TOPICS), partitions=1, retention_ms=3_600_000)
        start = time.perf_counter()
        fill_topic(bootstrap, aged, aged_batches)
        aging_s = time.perf_counter() - start
        row: dict[str, Any] = {
            "kind": "broker_floor",
            "rate": rate,
            "seconds": seconds,
            "aged_batches": aged_batches,
            "aging_seconds": aging_s,
            "fresh": paced_hops(bootstrap, fresh, rate, seconds, world.broker_cpu_s),
            "aged": paced_hops(bootstrap, aged, rate, seconds, world.broker_cpu_s),
        }
    finally:
        world.close()
    for name in ("fresh", "aged"):
        part = row[name]
        p99 = part["hop_ms"].get("p99", float("nan"))
        cpu = part["broker_cpu_per_s"]
        log(f"broker floor, {name} partition, {rate:,.0f} msgs/s: hop p99 {p99:.1f} ms, broker CPU {cpu:.2f}")
    return row


MODES = {
    "all-in-one": orchestration.DATAFLOW_SETS["all-in-one"],
    "per-stage": orchestration.DATAFLOW_SETS["per-stage"],
}


def live_scenario(config: Any, log: Log) -> list[dict[str, Any]]:
    """Raw broker, sustained throughput and latency at fixed rates, per mode."""
    rows = [raw_broker(config.live_ticks)]
    floor_seconds = min(config.live_seconds, 5.0)
    rows.append(broker_floor(config.live_rates[0], floor_seconds, config.live_floor_batches, log))
    for mode in config.live_modes:
        flows = MODES[mode]
        rows.append(sustained(mode, flows, config.live_ticks, log))
        for rate in config.live_rates:
            rows.append(latency(mode, flows, rate, config.live_seconds, log))
    return rows
