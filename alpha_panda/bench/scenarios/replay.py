"""The ``replay`` scenario: the whole pipeline against the bare per-item flow, one worker.

Per instrument count: ticks/s through :func:`dataflows.pipeline.build_pipeline`
(decode, both strategies, risk, fills, portfolio, brokers ``paper`` and
``zerodha``, risk limits opened so that it trades:
:data:`alpha_panda.bench.harness.TRADING`), and through the bare flow that
only decodes and keys the same ticks one item per tick, the per-item
engine ceiling (issue 14, goal 3: pipeline >= bare). The pipeline's row
counts its fills and signals over both brokers.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

from bytewax.dataflow import Dataflow

from alpha_panda.bench.config import BenchConfig
from alpha_panda.bench.harness import CountingSink, Market, bare_flow, market, pipeline_flow, run_timed
from alpha_panda.bench.machine import rss
from alpha_panda.bench.scenarios import Log


def median_run(
    make: Callable[[], tuple[Dataflow, CountingSink]], repeat: int, workers: int = 1
) -> dict[str, Any]:
    """Run a fresh flow ``repeat`` times; seconds of each run, the median, and the messages counted.

    With a sink that counts by topic, ``topics`` holds the last run's counts.
    """
    seconds: list[float] = []
    outputs = 0
    topics: dict[str, int] | None = None
    for _ in range(repeat):
        flow, sink = make()
        seconds.append(run_timed(flow, workers))
        outputs = sink.total
        topics = dict(sorted(sink.topics.items())) if sink.topics is not None else None
    run: dict[str, Any] = {"seconds_runs": seconds, "seconds": statistics.median(seconds), "outputs": outputs}
    if topics is not None:
        run["topics"] = topics
    return run


def trading_counts(topics: dict[str, int]) -> dict[str, int]:
    """Signals, fills and rejections over every broker, from messages counted by topic."""

    def total(suffix: str) -> int:
        return sum(count for topic, count in topics.items() if topic.endswith(suffix))

    return {
        "signals": total(".signals.raw"),
        "fills": total(".orders.filled"),
        "rejected": total(".signals.rejected"),
    }


def _rates(ticks: Market, repeat: int) -> tuple[dict[str, Any], dict[str, Any]]:
    batches, messages, tokens = ticks.batches(), ticks.messages(), ticks.spec.tokens()

    def make_pipeline() -> tuple[Dataflow, CountingSink]:
        sink = CountingSink(by_topic=True)
        return pipeline_flow(batches, tokens, sink), sink

    def make_bare() -> tuple[Dataflow, CountingSink]:
        sink = CountingSink()
        return bare_flow(messages, sink), sink

    return median_run(make_pipeline, repeat), median_run(make_bare, repeat)


def replay_scenario(config: BenchConfig, log: Log) -> list[dict[str, Any]]:
    """Pipeline vs bare per-item flow, ticks/s on one worker, per instrument count."""
    rows = []
    for instruments in config.instruments:
        ticks = market(instruments, config.ticks)
        log(f"replay: {instruments:,} instruments, {ticks.ticks:,} ticks")
        pipeline, bare = _rates(ticks, config.repeat)
        for run in (pipeline, bare):
            run["ticks_per_s"] = ticks.ticks / run["seconds"]
        pipeline["outputs_per_s"] = pipeline["outputs"] / pipeline["seconds"]
        pipeline.update(trading_counts(pipeline["topics"]))
        rows.append(
            {
                "instruments": instruments,
                "ticks": ticks.ticks,
                "ticks_per_instrument": ticks.spec.ticks_per_instrument,
                "workers": 1,
                "pipeline": pipeline,
                "bare": bare,
                "pipeline_over_bare": pipeline["ticks_per_s"] / bare["ticks_per_s"],
                **rss(),
            }
        )
    return rows
