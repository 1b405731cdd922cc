"""The ``scaling`` scenario: one worker against two worker threads and two processes.

The baseline is the default one-worker replay (one trading shard). The
other layouts split the trading stage by instrument group
(:data:`alpha_panda.bench.harness.TRADING` with ``groups=GROUPS, shards=SHARDS``,
:mod:`dataflows.instrument_groups`): one strategy's instruments spread over
the workers, and accounts merge the groups' signals in one order. Every
layout runs in fresh processes, children of this module (``python -m
alpha_panda.bench.scenarios.scaling JOB``), each a ``cluster_main`` process
(``run_main`` for one worker, as ``alpha-panda replay`` runs it):
a replay is a fresh process too, and a flow run after others in the same
process runs 5 to 10% slower (allocator and cache state), which would
favour whichever layout ran fresh. Every layout must count the same messages.
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
from typing import Any, NamedTuple

from bytewax.testing import cluster_main, run_main

from alpha_panda.bench.config import BenchConfig
from alpha_panda.bench.harness import TRADING, CountingSink, MemorySource, market, pipeline_flow
from alpha_panda.bench.machine import rss
from alpha_panda.bench.scenarios import Log
from alpha_panda.bench.scenarios.replay import median_ratio
from alpha_panda.two_processes import free_ports
from dataflows.runtime.collector import tune_collector

GROUPS = 3
"""Instrument groups of the split layouts: on 2 workers, the worker that decodes hosts one, the other two."""
SHARDS = 2
"""Account shards of the split layouts (the two bench strategies land in different shards)."""


class Layout(NamedTuple):
    """Where the pipeline runs: ``workers`` over ``processes``, trading split ``groups`` x ``shards``."""

    mode: str
    workers: int
    processes: int
    groups: int
    shards: int


LAYOUTS = (
    Layout("1 worker", 1, 1, 1, 1),
    Layout(f"1 worker, {GROUPS} instrument groups", 1, 1, GROUPS, SHARDS),
    Layout("2 worker threads, 1 process", 2, 1, GROUPS, SHARDS),
    Layout("2 processes, 1 worker each", 2, 2, GROUPS, SHARDS),
)
"""Every layout, the two-process one last (``--no-processes`` leaves it out)."""


def run_layout(layout: Layout, instruments: int, ticks: int, timeout: float = 600) -> dict[str, Any]:
    """Run the pipeline in ``layout`` on fresh processes; seconds and messages counted.

    Each process builds the same ticks, then reports ``time.perf_counter``
    (CLOCK_MONOTONIC on Linux, shared by processes) around its run
    (``run_main`` or ``cluster_main``), and when its source read the first
    batch. ``seconds`` runs from the first input batch (the processes are
    connected) until every process is done; ``seconds_with_startup`` from
    when the last had started its run, so it includes connecting them.
    ``peak_rss_bytes``: the largest process's peak.
    """
    addresses = [f"127.0.0.1:{port}" for port in free_ports(layout.processes)] if layout.processes > 1 else []
    root = str(Path(__file__).resolve().parents[3])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    children = []
    for proc_id in range(layout.processes):
        job = {
            "instruments": instruments,
            "ticks": ticks,
            "groups": layout.groups,
            "shards": layout.shards,
            "workers_per_process": layout.workers // layout.processes,
            "addresses": addresses,
            "proc_id": proc_id,
        }
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
            msg = f"bench layout process {child.pid} exited {child.returncode}: {err.strip()[-2000:]}"
            raise RuntimeError(msg)
        results.append(json.loads(out.strip().splitlines()[-1]))
    end = max(r["end"] for r in results)
    first_batch = min(r["first_batch"] for r in results if r["first_batch"] is not None)
    return {
        "seconds": end - first_batch,
        "seconds_with_startup": end - max(r["start"] for r in results),
        "outputs": sum(r["outputs"] for r in results),
        "ticks": results[0]["ticks"],
        "peak_rss_bytes": max(r["peak_rss_bytes"] for r in results),
    }


def layout_child(job: dict[str, Any]) -> dict[str, Any]:
    """One process of :func:`run_layout`: build the ticks, run, return the timings."""
    ticks = market(job["instruments"], job["ticks"])
    sink = CountingSink()
    source = MemorySource(ticks.batches())
    params = dataclasses.replace(TRADING, groups=job["groups"], shards=job["shards"])
    flow = pipeline_flow(source, ticks.spec.tokens(), sink, params)
    gc.collect()
    start = time.perf_counter()
    tune_collector()
    if job["workers_per_process"] == 1 and not job["addresses"]:
        # As `alpha-panda replay --processes 1` runs: the worker on the main thread. cluster_main
        # would run it on a thread of its own while the main thread takes the GIL every millisecond
        # to check for signals, about 5% slower.
        run_main(flow)
    else:
        cluster_main(flow, job["addresses"], job["proc_id"], worker_count_per_proc=job["workers_per_process"])
    end = time.perf_counter()
    return {
        "start": start,
        "first_batch": source.first_batch_at,
        "end": end,
        "outputs": sink.total,
        "ticks": ticks.ticks,
        "peak_rss_bytes": rss()["peak_rss_bytes"],
    }


def scaling_scenario(config: BenchConfig, log: Log) -> list[dict[str, Any]]:
    """One worker vs two (threads of one process, and two processes), trading split by instrument group.

    Every layout runs once per round (the two processes last), and each
    row's ``speedup`` is the median over rounds of the one-worker seconds
    over its own, so the machine's drift falls on every layout alike.
    """
    layouts = LAYOUTS if config.processes else tuple(x for x in LAYOUTS if x.processes == 1)
    size = f"{config.scaling_instruments:,} instruments, {config.scaling_ticks:,} ticks"
    runs: list[list[dict[str, Any]]] = [[] for _ in layouts]
    for round_ in range(1, config.repeat + 1):
        log(f"scaling: round {round_} of {config.repeat}, every layout in fresh processes ({size})")
        for layout, done in zip(layouts, runs, strict=True):
            done.append(run_layout(layout, config.scaling_instruments, config.scaling_ticks))
    base = [run["seconds"] for run in runs[0]]
    rows: list[dict[str, Any]] = []
    for layout, done in zip(layouts, runs, strict=True):
        seconds = [run["seconds"] for run in done]
        median = statistics.median(seconds)
        ticks = done[-1]["ticks"]
        rows.append(
            {
                **layout._asdict(),
                "seconds_runs": seconds,
                "seconds_with_startup": statistics.median(run["seconds_with_startup"] for run in done),
                "outputs": done[-1]["outputs"],
                "seconds": median,
                "instruments": config.scaling_instruments,
                "ticks": ticks,
                "ticks_per_s": ticks / median,
                "speedup": median_ratio(base, seconds),
                "peak_rss_bytes": max(run["peak_rss_bytes"] for run in done),
            }
        )
    return rows


if __name__ == "__main__":
    # The parent reads the last line of stdout.
    sys.stdout.write(json.dumps(layout_child(json.loads(sys.argv[1]))) + "\n")
