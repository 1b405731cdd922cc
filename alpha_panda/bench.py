"""``alpha-panda bench``: throughput, state size and scaling of the replay pipeline.

Pure measurement code; it changes nothing in the pipeline it measures.

Scenarios (``--scenarios``):

- ``replay``: ticks/s through the whole in-process pipeline
  (:func:`dataflows.pipeline.build_pipeline`: decode -> strategies -> risk ->
  fills -> portfolio, brokers ``paper`` and ``zerodha``) next to a *bare*
  Bytewax flow that only decodes (:func:`schemas.codec.decode_tick`) and keys
  the same ticks by instrument, the engine's ceiling on this machine.
- ``memory``: pickled bytes of state per (strategy, instrument), as Bytewax
  recovery stores it (strategy-stage :class:`dataflows.signals.ShardSnapshot`
  plus every :class:`dataflows.accounts.AccountState`), and process RSS.
- ``scaling``: one worker vs two worker threads vs two processes, the
  strategy stage split into ``PipelineParams(shards=2)``.
- ``live``: a placeholder (Kafka throughput and latency); not implemented,
  so never run and never printed.

Method: ticks come from :mod:`connectors.simulator` (deterministic), are
turned into :class:`schemas.codec.RawMessage` items *before* timing starts
and fed by an in-memory source (:class:`MemorySource`, one partition,
1,024 items a batch, like the tick-file source). Outputs go to a counting
sink (:class:`CountingSink`), so neither file reading nor JSON encoding and
disk writes are measured. Time is ``time.perf_counter`` around
``run_main``/``cluster_main`` only. With ``--repeat N`` each figure is the
*median* of N runs (every run's seconds are in the JSON).

Two strategies cover every instrument (one ``momentum``, one
``mean_reversion``, both also trading on ``zerodha``), so every instrument
has 2 strategies and 4 accounts (strategy x broker).
"""

from __future__ import annotations

import gc
import json
import os
import pickle
import platform
import resource
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any

import bytewax.operators as op
import typer
from bytewax.dataflow import Dataflow
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import cluster_main, run_main
from rich.console import Console
from rich.table import Table

from connectors.simulator import MarketSpec, simulate_lines
from dataflows.accounts import AccountState
from dataflows.clock import event_time_clock
from dataflows.pipeline import PipelineParams, build_pipeline
from dataflows.signals import ShardSnapshot
from operators.strategy import StrategyConfig
from schemas.codec import RawMessage, decode_tick
from schemas.envelope import TickEnvelope
from schemas.topics import MARKET_TICKS

BATCH_SIZE = 1024
"""Items per source batch, the default of :class:`connectors.files.TickFileSource`."""

STRATEGIES_PER_INSTRUMENT = 2
SOURCE_NOTE = (
    "in-memory source of RawMessage items built before timing (1 partition, 1024 items a batch); "
    "counting sink (no encoding, no disk)"
)

TARGETS = {
    "replay_ticks_per_s_100": 300_000,
    "replay_ticks_per_s_10000": 250_000,
    "pipeline_over_bare": 0.35,
    "two_worker_speedup": 1.6,
    "state_bytes_per_strategy_instrument": 2048,
    "live_all_in_one_ticks_per_s": 100_000,
    "live_all_in_one_tick_to_fill_p99_ms_at_1000": 10.0,
    "live_per_stage_tick_to_fill_p99_ms_at_1000": 40.0,
}
"""Issue 6 targets, on the 2-core bench machine."""


# --- input, output, flows ---------------------------------------------------------------


class _MemoryPartition(StatefulSourcePartition[RawMessage, int]):
    def __init__(
        self, items: Sequence[RawMessage], batch_size: int, resume: int | None, source: MemorySource
    ) -> None:
        self._items = items
        self._batch_size = batch_size
        self._at = resume or 0
        self._source = source

    def next_batch(self) -> list[RawMessage]:
        if self._source.first_batch_at is None:
            self._source.first_batch_at = time.perf_counter()
        if self._at >= len(self._items):
            raise StopIteration
        batch = list(self._items[self._at : self._at + self._batch_size])
        self._at += len(batch)
        return batch

    def snapshot(self) -> int:
        return self._at


class MemorySource(FixedPartitionedSource[RawMessage, int]):
    """Pre-built raw messages, in order, from one partition (read by one worker).

    ``first_batch_at``: ``time.perf_counter()`` when the first batch was
    asked for (after cluster start-up), or ``None`` if no worker of this
    process owns the partition.
    """

    def __init__(self, items: Sequence[RawMessage], batch_size: int = BATCH_SIZE) -> None:
        self._items = items
        self._batch_size = batch_size
        self.first_batch_at: float | None = None

    def list_parts(self) -> list[str]:
        """One partition, like a tick file."""
        return ["memory"]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _MemoryPartition:
        """Serve the items from index ``resume_state`` (default 0)."""
        return _MemoryPartition(self._items, self._batch_size, resume_state, self)


class _CountingPartition(StatelessSinkPartition[Any]):
    def __init__(self, cell: list[int]) -> None:
        self._cell = cell

    def write_batch(self, items: list[Any]) -> None:
        self._cell[0] += len(items)


class CountingSink(DynamicSink[Any]):
    """Counts items and drops them; :attr:`total` is the count over all workers."""

    def __init__(self) -> None:
        self._cells: list[list[int]] = []

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _CountingPartition:
        """One counter per worker (no sharing between threads)."""
        cell = [0]
        self._cells.append(cell)
        return _CountingPartition(cell)

    @property
    def total(self) -> int:
        """Items written so far, all workers."""
        return sum(cell[0] for cell in self._cells)


def bench_configs(tokens: Sequence[int]) -> list[StrategyConfig]:
    """Two strategies on every token (DESIGN.md default parameters), both on paper and zerodha."""
    return [
        StrategyConfig("bench_momentum", "momentum", tuple(tokens), zerodha_trading_enabled=True),
        StrategyConfig("bench_mean_reversion", "mean_reversion", tuple(tokens), zerodha_trading_enabled=True),
    ]


def market(instruments: int, ticks: int, seed: int = 7) -> tuple[list[RawMessage], MarketSpec]:
    """Simulated raw tick messages: ``ticks // instruments`` (at least 1) per instrument, round-robin."""
    spec = MarketSpec(instruments=instruments, ticks_per_instrument=max(1, ticks // instruments), seed=seed)
    messages = [
        RawMessage(MARKET_TICKS, None, line.rstrip(b"\n"), 0, n)
        for n, line in enumerate(simulate_lines(spec))
    ]
    return messages, spec


def _epoch(_msg: RawMessage) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC)


def pipeline_flow(
    messages: Sequence[RawMessage] | MemorySource, spec: MarketSpec, sink: CountingSink, shards: int = 1
) -> Dataflow:
    """The whole replay pipeline (event-time clock) from memory into ``sink``."""
    flow = Dataflow("bench_pipeline")
    source = messages if isinstance(messages, MemorySource) else MemorySource(messages)
    raw = op.input("ticks", flow, source)
    out = build_pipeline(
        raw,
        bench_configs(spec.tokens()),
        PipelineParams(shards=shards),
        clock=event_time_clock,
        dlq_clock=_epoch,
    )
    op.output("count", out, sink)
    return flow


def _decode(msg: RawMessage) -> TickEnvelope:
    return decode_tick(msg.value)


def _token_key(tick: TickEnvelope) -> str:
    return str(tick.data.instrument_token)


def bare_flow(messages: Sequence[RawMessage], sink: CountingSink) -> Dataflow:
    """The engine's ceiling: decode and key by instrument, nothing else."""
    flow = Dataflow("bench_bare")
    raw = op.input("ticks", flow, MemorySource(messages))
    keyed = op.key_on("key", op.map("decode", raw, _decode), _token_key)
    op.output("count", keyed, sink)
    return flow


def run_timed(flow: Dataflow, workers: int = 1) -> float:
    """Run ``flow`` to completion; return wall seconds (perf_counter around the run only)."""
    gc.collect()
    start = time.perf_counter()
    if workers == 1:
        run_main(flow)
    else:
        cluster_main(flow, [], 0, worker_count_per_proc=workers)
    return time.perf_counter() - start


# --- machine facts ----------------------------------------------------------------------


def _proc_fields(path: str, names: Sequence[str]) -> dict[str, int]:
    """Return ``kB`` fields of a /proc file in bytes (empty where /proc is absent)."""
    found: dict[str, int] = {}
    try:
        for line in Path(path).read_text().splitlines():
            name, _, rest = line.partition(":")
            if name in names:
                found[name] = int(rest.split()[0]) * 1024
    except OSError:
        pass
    return found


def rss() -> dict[str, int]:
    """Process memory in bytes: current RSS (``VmRSS``) and peak RSS (``VmHWM``/ru_maxrss)."""
    fields = _proc_fields("/proc/self/status", ("VmRSS", "VmHWM"))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports kB
    return {"rss_bytes": fields.get("VmRSS", peak), "peak_rss_bytes": fields.get("VmHWM", peak)}


def hardware() -> dict[str, Any]:
    """CPU model, logical cores (total and usable), memory in bytes, OS."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "memory_bytes": _proc_fields("/proc/meminfo", ("MemTotal",)).get("MemTotal"),
        "platform": platform.platform(),
    }


def software() -> dict[str, str]:
    """Versions of Python and the libraries on the hot path."""
    versions = {"python": platform.python_version(), "implementation": platform.python_implementation()}
    for name in ("bytewax", "msgspec", "orjson"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "missing"
    return versions


# --- scenarios --------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchConfig:
    """What to run.

    ``instruments``: instrument counts of the replay and memory scenarios.
    ``ticks``: ticks per scenario (split evenly over the instruments).
    ``repeat``: runs per timed figure (the median is reported).
    ``scaling_instruments`` / ``scaling_ticks``: size of the scaling runs.
    ``processes``: also run two processes in the scaling scenario.
    """

    scenarios: tuple[str, ...] = ("replay", "memory", "scaling")
    instruments: tuple[int, ...] = (10, 100, 1_000, 10_000)
    ticks: int = 300_000
    repeat: int = 1
    scaling_instruments: int = 100
    scaling_ticks: int = 300_000
    processes: bool = True
    live_ticks: int = 60_000
    live_rates: tuple[float, ...] = (1_000.0, 5_000.0)
    live_seconds: float = 20.0
    live_modes: tuple[str, ...] = ("all-in-one", "per-stage")


Log = Callable[[str], None]


def _median_run(
    make: Callable[[], tuple[Dataflow, CountingSink]], repeat: int, workers: int = 1
) -> dict[str, Any]:
    """Run a fresh flow ``repeat`` times; seconds of each run, the median, and the output count."""
    seconds: list[float] = []
    outputs = 0
    for _ in range(repeat):
        flow, sink = make()
        seconds.append(run_timed(flow, workers))
        outputs = sink.total
    return {"seconds_runs": seconds, "seconds": statistics.median(seconds), "outputs": outputs}


def replay_scenario(config: BenchConfig, log: Log) -> list[dict[str, Any]]:
    """Pipeline vs bare-engine ticks/s on one worker, per instrument count."""
    rows = []
    for instruments in config.instruments:
        messages, spec = market(instruments, config.ticks)
        ticks = len(messages)
        log(f"replay: {instruments:,} instruments, {ticks:,} ticks")

        def make_pipeline(messages: list[RawMessage] = messages, spec: MarketSpec = spec) -> Any:
            sink = CountingSink()
            return pipeline_flow(messages, spec, sink), sink

        def make_bare(messages: list[RawMessage] = messages) -> Any:
            sink = CountingSink()
            return bare_flow(messages, sink), sink

        pipeline = _median_run(make_pipeline, config.repeat)
        bare = _median_run(make_bare, config.repeat)
        for run in (pipeline, bare):
            run["ticks_per_s"] = ticks / run["seconds"]
        pipeline["outputs_per_s"] = pipeline["outputs"] / pipeline["seconds"]
        rows.append(
            {
                "instruments": instruments,
                "ticks": ticks,
                "ticks_per_instrument": spec.ticks_per_instrument,
                "workers": 1,
                "pipeline": pipeline,
                "bare": bare,
                "pipeline_over_bare": pipeline["ticks_per_s"] / bare["ticks_per_s"],
                **rss(),
            }
        )
        del messages
    return rows


def _stored_snapshots(db_dir: Path) -> dict[str, list[bytes]]:
    """Latest pickled snapshot of every (step, key) in a recovery directory, by step id."""
    latest: dict[tuple[str, str], tuple[int, bytes]] = {}
    for part in sorted(db_dir.glob("*.sqlite3")):
        with sqlite3.connect(part) as db:
            query = "SELECT step_id, state_key, snap_epoch, ser_change FROM snaps"
            for step, key, epoch, blob in db.execute(query):
                if blob is not None and ((step, key) not in latest or epoch > latest[step, key][0]):
                    latest[step, key] = (epoch, blob)
    by_step: dict[str, list[bytes]] = {}
    for (step, _key), (_epoch, blob) in latest.items():
        by_step.setdefault(step, []).append(blob)
    return by_step


def measure_state(messages: Sequence[RawMessage], spec: MarketSpec) -> dict[str, Any]:
    """Replay with recovery on; return the pickled state sizes (bytes) that Bytewax stored.

    One epoch spans the whole run, so each key is snapshotted once, at the end.
    """
    with tempfile.TemporaryDirectory(prefix="alpha-panda-bench-") as tmp:
        db_dir = Path(tmp)
        init_db_dir(db_dir, 1)
        flow = pipeline_flow(messages, spec, CountingSink())
        run_main(flow, epoch_interval=timedelta(days=1), recovery_config=RecoveryConfig(str(db_dir)))
        by_step = _stored_snapshots(db_dir)
    strategy_blobs: list[bytes] = []
    account_blobs: list[bytes] = []
    instruments_held = 0
    for blobs in by_step.values():
        sample = pickle.loads(blobs[0])  # noqa: S301 - our own recovery store, just written
        if isinstance(sample, ShardSnapshot):
            strategy_blobs += blobs
            instruments_held += sum(len(pickle.loads(b).instruments) for b in blobs)  # noqa: S301
        elif isinstance(sample, AccountState):
            account_blobs += blobs
    pairs = STRATEGIES_PER_INSTRUMENT * spec.instruments
    strategy_bytes = sum(map(len, strategy_blobs))
    account_bytes = sum(map(len, account_blobs))
    return {
        "strategy_state_bytes": strategy_bytes,
        "strategy_keys": len(strategy_blobs),
        "instruments_in_state": instruments_held,
        "account_state_bytes": account_bytes,
        "account_keys": len(account_blobs),
        "strategy_instrument_pairs": pairs,
        "strategy_bytes_per_pair": strategy_bytes / pairs,
        "account_bytes_per_pair": account_bytes / pairs,
        "bytes_per_pair": (strategy_bytes + account_bytes) / pairs,
    }


def memory_scenario(config: BenchConfig, log: Log) -> list[dict[str, Any]]:
    """State bytes per (strategy, instrument) and RSS, per instrument count."""
    rows = []
    for instruments in config.instruments:
        messages, spec = market(instruments, config.ticks)
        log(f"memory: {instruments:,} instruments, {len(messages):,} ticks (recovery on)")
        before = rss()["rss_bytes"]
        row = {"instruments": instruments, "ticks": len(messages), **measure_state(messages, spec)}
        after = rss()
        row.update(after, rss_growth_bytes=after["rss_bytes"] - before)
        rows.append(row)
        del messages
    return rows


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def two_processes(instruments: int, ticks: int, shards: int = 2, timeout: float = 600) -> dict[str, Any]:
    """Run the pipeline as a 2-process cluster (one worker each); seconds and outputs.

    Each process builds the same ticks, then reports ``time.perf_counter``
    (CLOCK_MONOTONIC on Linux, shared by processes) around its
    ``cluster_main``, and when its source read the first batch. ``seconds``
    runs from the first input batch (the cluster is connected) until both
    processes are done; ``seconds_with_startup`` from when both had called
    ``cluster_main``, so it includes connecting the two processes.
    """
    addresses = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    children = []
    for proc_id in range(2):
        job = {"instruments": instruments, "ticks": ticks, "shards": shards, "addresses": addresses}
        job["proc_id"] = proc_id
        children.append(
            subprocess.Popen(
                [sys.executable, "-m", "alpha_panda.bench", json.dumps(job)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                text=True,
            )
        )
    results = []
    for child in children:
        try:
            out, err = child.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for other in children:
                other.kill()
            raise
        if child.returncode != 0:
            msg = f"bench cluster process {child.pid} exited {child.returncode}: {err.strip()[-2000:]}"
            raise RuntimeError(msg)
        results.append(json.loads(out.strip().splitlines()[-1]))
    end = max(r["end"] for r in results)
    first_batch = min(r["first_batch"] for r in results if r["first_batch"] is not None)
    return {
        "seconds": end - first_batch,
        "seconds_with_startup": end - max(r["start"] for r in results),
        "outputs": sum(r["outputs"] for r in results),
    }


def _cluster_child(job: dict[str, Any]) -> None:
    """One process of :func:`two_processes`: build the ticks, run, print timings as JSON."""
    messages, spec = market(job["instruments"], job["ticks"])
    sink = CountingSink()
    source = MemorySource(messages, job.get("batch_size", BATCH_SIZE))
    flow = pipeline_flow(source, spec, sink, shards=job["shards"])
    gc.collect()
    start = time.perf_counter()
    cluster_main(flow, job["addresses"], job["proc_id"], worker_count_per_proc=1)
    end = time.perf_counter()
    timings = {"start": start, "first_batch": source.first_batch_at, "end": end, "outputs": sink.total}
    print(json.dumps(timings))  # noqa: T201 - the parent reads it


def scaling_scenario(config: BenchConfig, log: Log) -> list[dict[str, Any]]:
    """One worker vs two (threads of one process, and two processes), strategy stage in shards."""
    messages, spec = market(config.scaling_instruments, config.scaling_ticks)
    ticks = len(messages)
    modes = [
        ("1 worker", 1, 1, 1),
        ("1 worker, 2 shards", 1, 1, 2),
        ("2 worker threads, 1 process", 2, 1, 2),
    ]
    rows: list[dict[str, Any]] = []
    for name, workers, processes, shards in modes:
        log(f"scaling: {name} ({config.scaling_instruments:,} instruments, {ticks:,} ticks)")

        def make(shards: int = shards) -> Any:
            sink = CountingSink()
            return pipeline_flow(messages, spec, sink, shards=shards), sink

        run = _median_run(make, config.repeat, workers)
        rows.append({"mode": name, "workers": workers, "processes": processes, "shards": shards, **run})
    if config.processes:
        log(f"scaling: 2 processes ({config.scaling_instruments:,} instruments, {ticks:,} ticks)")
        runs = [two_processes(config.scaling_instruments, config.scaling_ticks) for _ in range(config.repeat)]
        seconds = [r["seconds"] for r in runs]
        rows.append(
            {
                "seconds_with_startup": statistics.median(r["seconds_with_startup"] for r in runs),
                "mode": "2 processes, 1 worker each",
                "workers": 2,
                "processes": 2,
                "shards": 2,
                "seconds_runs": seconds,
                "seconds": statistics.median(seconds),
                "outputs": runs[-1]["outputs"],
            }
        )
    base = rows[0]["seconds"]
    for row in rows:
        row.update(
            instruments=config.scaling_instruments,
            ticks=ticks,
            ticks_per_s=ticks / row["seconds"],
            speedup=base / row["seconds"],
            **rss(),
        )
    return rows


def _live(config: BenchConfig, log: Log) -> list[dict[str, Any]]:
    from alpha_panda.bench_live import live_scenario  # noqa: PLC0415 - needs the local servers

    return live_scenario(config, log)


SCENARIOS: dict[str, Callable[[BenchConfig, Log], list[dict[str, Any]]] | None] = {
    "replay": replay_scenario,
    "memory": memory_scenario,
    "scaling": scaling_scenario,
    "live": _live,
}
"""Every scenario by name; ``None`` marks one that is not implemented yet."""

IMPLEMENTED = tuple(name for name, run in SCENARIOS.items() if run is not None)


def _targets(results: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Compare measured figures with the issue's targets (only those measured in this run)."""
    checks: list[dict[str, Any]] = []

    def check(name: str, measured: float, target: float, *, at_least: bool = True) -> None:
        met = measured >= target if at_least else measured <= target
        checks.append({"target": name, "measured": measured, "threshold": target, "met": met})

    replay = {row["instruments"]: row for row in results.get("replay", [])}
    for n in (100, 10_000):
        if n in replay:
            name = f"replay_ticks_per_s_{n}"
            check(name, replay[n]["pipeline"]["ticks_per_s"], TARGETS[name])
    if replay:
        worst = min(row["pipeline_over_bare"] for row in replay.values())
        check("pipeline_over_bare (worst size)", worst, TARGETS["pipeline_over_bare"])
    two = [row["speedup"] for row in results.get("scaling", []) if row["workers"] == 2]
    if two:
        check("two_worker_speedup (best 2-worker mode)", max(two), TARGETS["two_worker_speedup"])
    memory = results.get("memory", [])
    if memory:
        worst_bytes = max(row["bytes_per_pair"] for row in memory)
        check(
            "state_bytes_per_strategy_instrument (worst size)",
            worst_bytes,
            TARGETS["state_bytes_per_strategy_instrument"],
            at_least=False,
        )
    for row in results.get("live", []):
        if row["kind"] == "sustained" and row["mode"] == "all-in-one":
            check("live_all_in_one_ticks_per_s", row["ticks_per_s"], TARGETS["live_all_in_one_ticks_per_s"])
        if row["kind"] == "latency" and row["rate"] == 1_000 and "p99" in row["tick_to_fill_ms"]:
            name = f"live_{row['mode'].replace('-', '_')}_tick_to_fill_p99_ms_at_1000"
            check(name, row["tick_to_fill_ms"]["p99"], TARGETS[name], at_least=False)
    return checks


def run_bench(config: BenchConfig, log: Log = lambda _line: None) -> dict[str, Any]:
    """Run the chosen scenarios; return the report (the JSON written by the command)."""
    unknown = [name for name in config.scenarios if name not in SCENARIOS]
    pending = [name for name in config.scenarios if name in SCENARIOS and SCENARIOS[name] is None]
    if unknown or pending:
        msg = (
            f"scenarios must be among {list(IMPLEMENTED)}; unknown: {unknown}, not implemented yet: {pending}"
        )
        raise ValueError(msg)
    results: dict[str, list[dict[str, Any]]] = {}
    for name in config.scenarios:
        scenario = SCENARIOS[name]
        assert scenario is not None  # noqa: S101 - checked above
        results[name] = scenario(config, log)
    return {
        "created": datetime.now(UTC).isoformat(),
        "hardware": hardware(),
        "software": software(),
        "method": {
            "source": SOURCE_NOTE,
            "timer": "time.perf_counter around run_main/cluster_main only (data generation excluded)",
            "statistic": f"median of {config.repeat} run(s)",
            "strategies": "momentum + mean_reversion on every instrument, brokers paper + zerodha (dry_run)",
            "state": "pickled snapshots as stored by Bytewax recovery, one epoch per run",
        },
        "config": {
            "scenarios": list(config.scenarios),
            "instruments": list(config.instruments),
            "ticks": config.ticks,
            "repeat": config.repeat,
            "scaling_instruments": config.scaling_instruments,
            "scaling_ticks": config.scaling_ticks,
            "processes": config.processes,
        },
        "scenarios": results,
        "not_implemented": [name for name, run in SCENARIOS.items() if run is None],
        "targets": _targets(results),
    }


# --- printing and the command -------------------------------------------------------------


def _rate(value: float) -> str:
    return f"{value:,.0f}"


def _mb(value: float) -> str:
    return f"{value / 2**20:,.0f}"


def _replay_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="Replay throughput, 1 worker (ticks/s)")
    names = ("instruments", "ticks", "pipeline s", "pipeline ticks/s", "outputs", "bare s", "bare ticks/s")
    for name in (*names, "pipeline/bare", "RSS MiB"):
        table.add_column(name, justify="right")
    for row in rows:
        table.add_row(
            f"{row['instruments']:,}",
            f"{row['ticks']:,}",
            f"{row['pipeline']['seconds']:.2f}",
            _rate(row["pipeline"]["ticks_per_s"]),
            f"{row['pipeline']['outputs']:,}",
            f"{row['bare']['seconds']:.2f}",
            _rate(row["bare"]["ticks_per_s"]),
            f"{row['pipeline_over_bare']:.1%}",
            _mb(row["rss_bytes"]),
        )
    return table


def _memory_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="State per (strategy, instrument), pickled as stored by recovery (bytes)")
    names = ("instruments", "pairs", "strategy stage", "accounts (4)", "strategy B/pair", "account B/pair")
    for name in (*names, "total B/pair", "RSS MiB", "peak RSS MiB"):
        table.add_column(name, justify="right")
    for row in rows:
        table.add_row(
            f"{row['instruments']:,}",
            f"{row['strategy_instrument_pairs']:,}",
            f"{row['strategy_state_bytes']:,}",
            f"{row['account_state_bytes']:,}",
            f"{row['strategy_bytes_per_pair']:,.0f}",
            f"{row['account_bytes_per_pair']:,.0f}",
            f"{row['bytes_per_pair']:,.0f}",
            _mb(row["rss_bytes"]),
            _mb(row["peak_rss_bytes"]),
        )
    return table


def _scaling_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title=f"Scaling, {rows[0]['instruments']:,} instruments, {rows[0]['ticks']:,} ticks")
    for name in ("mode", "shards", "seconds", "ticks/s", "outputs", "speedup"):
        table.add_column(name, justify="left" if name == "mode" else "right")
    for row in rows:
        table.add_row(
            row["mode"],
            str(row["shards"]),
            f"{row['seconds']:.2f}",
            _rate(row["ticks_per_s"]),
            f"{row['outputs']:,}",
            f"{row['speedup']:.2f}x",
        )
    return table


def _targets_table(checks: list[dict[str, Any]]) -> Table:
    table = Table(title="Issue 6 targets")
    for name in ("target", "measured", "threshold", "met"):
        table.add_column(name, justify="left" if name == "target" else "right")
    for check in checks:
        fmt = "{:.2f}" if check["threshold"] < 10 else "{:,.0f}"
        table.add_row(
            check["target"],
            fmt.format(check["measured"]),
            fmt.format(check["threshold"]),
            "[green]yes[/]" if check["met"] else "[red]no[/]",
        )
    return table


def _live_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="Live, local stack (Tansu, Redis, PostgreSQL), 20 instruments")
    for name in (
        "measurement",
        "mode",
        "offered",
        "ticks/s",
        "signal p50/p95/p99 ms",
        "fill p50/p95/p99 ms",
        "RSS MiB (growth)",
    ):
        table.add_column(name, justify="left" if name in ("measurement", "mode") else "right")

    def pct(stats: dict[str, Any]) -> str:
        return (
            "-" if not stats.get("count") else f"{stats['p50']:.1f} / {stats['p95']:.1f} / {stats['p99']:.1f}"
        )

    for row in rows:
        if row["kind"] == "raw_broker":
            table.add_row(
                "raw broker",
                "produce / consume",
                "-",
                f"{_rate(row['produce_per_s'])} / {_rate(row['consume_per_s'])}",
                "-",
                "-",
                "-",
            )
        elif row["kind"] == "sustained":
            rss = sum(row["rss_kib"].values()) / 1024
            table.add_row("sustained", row["mode"], "max", _rate(row["ticks_per_s"]), "-", "-", f"{rss:.0f}")
        else:
            rss = sum(row["rss_kib_end"].values()) / 1024
            growth = sum(row["rss_growth_kib"].values()) / 1024
            table.add_row(
                f"latency ({row['seconds']:.0f} s)",
                row["mode"],
                _rate(row["rate"]),
                "-",
                pct(row["tick_to_signal_ms"]),
                pct(row["tick_to_fill_ms"]),
                f"{rss:.0f} ({growth:+.1f})",
            )
    return table


_TABLES: dict[str, Callable[[list[dict[str, Any]]], Table]] = {
    "replay": _replay_table,
    "memory": _memory_table,
    "scaling": _scaling_table,
    "live": _live_table,
}


def print_report(report: dict[str, Any], console: Console) -> None:
    """Print the machine, one rich table per scenario that ran, then the target checks."""
    hw, sw = report["hardware"], report["software"]
    console.print(
        f"{hw['cpu_model']}, {hw['usable_cores']}/{hw['cores']} cores, "
        f"{(hw['memory_bytes'] or 0) / 2**30:.1f} GiB; Python {sw['python']}, "
        f"bytewax {sw['bytewax']}, msgspec {sw['msgspec']}; {report['method']['statistic']}"
    )
    for name, rows in report["scenarios"].items():
        if rows and name in _TABLES:
            console.print(_TABLES[name](rows))
    if report["targets"]:
        console.print(_targets_table(report["targets"]))


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part.replace("_", "")) for part in text.split(",") if part.strip())
    except ValueError as err:
        msg = f"expected comma-separated integers, got {text!r}"
        raise typer.BadParameter(msg) from err
    if not values or min(values) < 1:
        msg = f"expected positive integers, got {text!r}"
        raise typer.BadParameter(msg)
    return values


QUICK = BenchConfig(
    instruments=(10, 100),
    ticks=5_000,
    repeat=1,
    scaling_instruments=10,
    scaling_ticks=5_000,
    live_ticks=2_000,
    live_rates=(500.0,),
    live_seconds=3.0,
)
"""Small sizes for a smoke run (seconds, not minutes)."""


def bench_command(
    scenarios: Annotated[
        str, typer.Option(help=f"Comma-separated, among {','.join(IMPLEMENTED)} (live starts local servers).")
    ] = ",".join(IMPLEMENTED),
    instruments: Annotated[
        str | None, typer.Option(help="Instrument counts for replay and memory (default 10,100,1000,10000).")
    ] = None,
    ticks: Annotated[int | None, typer.Option(min=1, help="Ticks per scenario (default 300000).")] = None,
    repeat: Annotated[int, typer.Option(min=1, help="Runs per figure; the median is reported.")] = 1,
    scaling_instruments: Annotated[
        int | None, typer.Option(min=1, help="Instruments in the scaling runs (default 100).")
    ] = None,
    processes: Annotated[bool, typer.Option(help="Include the two-process run in scaling.")] = True,
    live_ticks: Annotated[
        int | None, typer.Option(min=100, help="Ticks of the live throughput runs (default 60000).")
    ] = None,
    live_rates: Annotated[
        str | None, typer.Option(help="Offered ticks/s of the live latency runs (default 1000,5000).")
    ] = None,
    live_seconds: Annotated[
        float | None, typer.Option(min=1, help="Seconds of each live latency run (default 20).")
    ] = None,
    quick: Annotated[bool, typer.Option(help="Small sizes, for a smoke test.")] = False,
    json_path: Annotated[Path, typer.Option("--json", help="Where to write the JSON report.")] = Path(
        "out/bench.json"
    ),
) -> None:
    """Measure replay throughput vs the bare engine, state size and worker scaling."""
    base = QUICK if quick else BenchConfig()
    chosen = tuple(name.strip() for name in scenarios.split(",") if name.strip())
    overrides: dict[str, Any] = {"scenarios": chosen, "repeat": repeat, "processes": processes}
    if instruments is not None:
        overrides["instruments"] = _int_list(instruments)
    if ticks is not None:
        overrides["ticks"] = overrides["scaling_ticks"] = ticks
    if scaling_instruments is not None:
        overrides["scaling_instruments"] = scaling_instruments
    if live_ticks is not None:
        overrides["live_ticks"] = live_ticks
    if live_rates is not None:
        overrides["live_rates"] = tuple(float(rate) for rate in _int_list(live_rates))
    if live_seconds is not None:
        overrides["live_seconds"] = live_seconds
    config = replace(base, **overrides)
    console = Console(width=None if Console().is_terminal else 120)
    err_console = Console(stderr=True)
    try:
        report = run_bench(config, log=lambda line: err_console.print(f"[dim]{line}[/]"))
    except ValueError as err:
        err_console.print(f"[bold red]error:[/] {err}")
        raise typer.Exit(code=2) from err
    print_report(report, console)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    console.print(f"wrote {json_path}")


if __name__ == "__main__":
    _cluster_child(json.loads(sys.argv[1]))
