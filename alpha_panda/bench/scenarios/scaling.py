"""The ``scaling`` scenario: one worker against two worker threads and two processes.

The baseline is the default one-worker replay (one trading shard). The
other layouts split the trading stage by instrument group
(:data:`alpha_panda.bench.harness.TRADING` with ``groups=GROUPS, shards=SHARDS``,
:mod:`dataflows.instrument_groups`): one strategy's instruments spread over
the workers, and accounts merge the groups' signals in one order. The
two-process run starts two children of this module (``python -m
alpha_panda.bench.scenarios.scaling JOB``), each a ``cluster_main`` process
with one worker; every layout must count the same messages.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bytewax.dataflow import Dataflow
from bytewax.testing import cluster_main

from alpha_panda.bench.config import BenchConfig
from alpha_panda.bench.harness import TRADING, CountingSink, MemorySource, market, pipeline_flow
from alpha_panda.bench.machine import rss
from alpha_panda.bench.scenarios import Log
from alpha_panda.bench.scenarios.replay import Make, interleaved_runs, median_ratio
from alpha_panda.two_processes import free_ports
from dataflows.runtime.collector import tune_collector

GROUPS = 3
"""Instrument groups of the split layouts: on 2 workers, the worker that decodes hosts one, the other two."""
SHARDS = 2
"""Account shards of the split layouts (the two bench strategies land in different shards)."""

MODES = (
    ("1 worker", 1, 1, 1, 1),
    (f"1 worker, {GROUPS} instrument groups", 1, 1, GROUPS, SHARDS),
    ("2 worker threads, 1 process", 2, 1, GROUPS, SHARDS),
)
"""(name, workers, processes, groups, shards) of the in-process layouts."""


def two_processes(
    instruments: int, ticks: int, groups: int = GROUPS, shards: int = SHARDS, timeout: float = 600
) -> dict[str, Any]:
    """Run the pipeline as a 2-process cluster (one worker each); seconds and messages counted.

    Each process builds the same ticks, then reports ``time.perf_counter``
    (CLOCK_MONOTONIC on Linux, shared by processes) around its
    ``cluster_main``, and when its source read the first batch. ``seconds``
    runs from the first input batch (the cluster is connected) until both
    processes are done; ``seconds_with_startup`` from when both had called
    ``cluster_main``, so it includes connecting the two processes.
    """
    addresses = [f"127.0.0.1:{port}" for port in free_ports(2)]
    root = str(Path(__file__).resolve().parents[3])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    children = []
    for proc_id in range(2):
        job = {
            "instruments": instruments,
            "ticks": ticks,
            "groups": groups,
            "shards": shards,
            "addresses": addresses,
        }
        job["proc_id"] = proc_id
        children.append(
            subprocess.Popen(
                [sys.executable, "-m", __name__, json.dumps(job)],
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


def cluster_child(job: dict[str, Any]) -> dict[str, Any]:
    """One process of :func:`two_processes`: build the ticks, run, return the timings."""
    ticks = market(job["instruments"], job["ticks"])
    sink = CountingSink()
    source = MemorySource(ticks.batches())
    params = dataclasses.replace(TRADING, groups=job["groups"], shards=job["shards"])
    flow = pipeline_flow(source, ticks.spec.tokens(), sink, params)
    gc.collect()
    start = time.perf_counter()
    tune_collector()
    cluster_main(flow, job["addresses"], job["proc_id"], worker_count_per_proc=1)
    end = time.perf_counter()
    return {"start": start, "first_batch": source.first_batch_at, "end": end, "outputs": sink.total}


def scaling_scenario(config: BenchConfig, log: Log) -> list[dict[str, Any]]:
    """One worker vs two (threads of one process, and two processes), trading split by instrument group.

    Every layout runs once per round (the two processes last), and each
    row's ``speedup`` is the median over rounds of the one-worker seconds
    over its own, so the machine's drift falls on every layout alike.
    """
    ticks = market(config.scaling_instruments, config.scaling_ticks)
    batches, tokens = ticks.batches(), ticks.spec.tokens()
    size = f"{config.scaling_instruments:,} instruments, {ticks.ticks:,} ticks"

    def maker(groups: int, shards: int) -> Make:
        params = dataclasses.replace(TRADING, groups=groups, shards=shards)

        def make() -> tuple[Dataflow, CountingSink]:
            sink = CountingSink()
            return pipeline_flow(batches, tokens, sink, params), sink

        return make

    makes = [(maker(groups, shards), workers) for _, workers, _, groups, shards in MODES]
    rounds: list[list[dict[str, Any]]] = []
    clusters: list[dict[str, Any]] = []
    for round_ in range(1, config.repeat + 1):
        log(f"scaling: round {round_} of {config.repeat}, every layout ({size})")
        rounds.append(interleaved_runs(makes, 1))
        if config.processes:
            clusters.append(two_processes(config.scaling_instruments, config.scaling_ticks))
    rows: list[dict[str, Any]] = [
        {
            "mode": name,
            "workers": workers,
            "processes": processes,
            "groups": groups,
            "shards": shards,
            "seconds_runs": [runs[i]["seconds"] for runs in rounds],
            "outputs": rounds[-1][i]["outputs"],
        }
        for i, (name, workers, processes, groups, shards) in enumerate(MODES)
    ]
    if clusters:
        rows.append(
            {
                "mode": "2 processes, 1 worker each",
                "workers": 2,
                "processes": 2,
                "groups": GROUPS,
                "shards": SHARDS,
                "seconds_runs": [r["seconds"] for r in clusters],
                "seconds_with_startup": statistics.median(r["seconds_with_startup"] for r in clusters),
                "outputs": clusters[-1]["outputs"],
            }
        )
    base = rows[0]["seconds_runs"]
    for row in rows:
        row["seconds"] = statistics.median(row["seconds_runs"])
        row.update(
            instruments=config.scaling_instruments,
            ticks=ticks.ticks,
            ticks_per_s=ticks.ticks / row["seconds"],
            speedup=median_ratio(base, row["seconds_runs"]),
            **rss(),
        )
    return rows


if __name__ == "__main__":
    # The parent reads the last line of stdout.
    sys.stdout.write(json.dumps(cluster_child(json.loads(sys.argv[1]))) + "\n")
