"""The ``replay`` scenario: the whole pipeline against the bare per-item flow, one worker.

Per instrument count: ticks/s through :func:`dataflows.pipeline.build_pipeline`
(decode, both strategies, risk, fills, portfolio, brokers ``paper`` and
``zerodha``, risk limits opened so that it trades:
:data:`alpha_panda.bench.harness.TRADING`), and through the bare flow that
only decodes and keys the same ticks one item per tick, the per-item
engine ceiling (issue 14, goal 3: pipeline >= bare). The two run in turns,
one of each per round, and ``pipeline_over_bare`` is the median of the
rounds' ratios. The pipeline's row counts its fills and signals over both
brokers.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import Any

from bytewax.dataflow import Dataflow

from alpha_panda.bench.config import BenchConfig
from alpha_panda.bench.harness import CountingSink, Market, bare_flow, market, pipeline_flow, run_timed
from alpha_panda.bench.machine import rss
from alpha_panda.bench.scenarios import Log

Make = Callable[[], tuple[Dataflow, CountingSink]]
"""Builds a fresh flow and the sink that counts what it writes."""


def interleaved_runs(makes: Sequence[tuple[Make, int]], repeat: int) -> list[dict[str, Any]]:
    """Run each ``(make, workers)`` flow ``repeat`` times, one of each per round.

    Rounds, not one flow's runs in a row: the machine's speed drifts within
    seconds, and interleaving lays the drift on every flow alike, so
    :func:`median_ratio` of two flows compares runs made side by side.
    Per flow: ``seconds_runs`` in round order, their median ``seconds``, the
    messages counted (``outputs``), and with a sink that counts by topic,
    the last run's ``topics``.
    """
    runs: list[dict[str, Any]] = [{"seconds_runs": [], "outputs": 0} for _ in makes]
    for _ in range(repeat):
        for run, (make, workers) in zip(runs, makes, strict=True):
            flow, sink = make()
            run["seconds_runs"].append(run_timed(flow, workers))
            run["outputs"] = sink.total
            if sink.topics is not None:
                run["topics"] = dict(sorted(sink.topics.items()))
    for run in runs:
        run["seconds"] = statistics.median(run["seconds_runs"])
    return runs


def median_ratio(numerators: Sequence[float], denominators: Sequence[float]) -> float:
    """The median, over rounds, of ``numerators[i] / denominators[i]`` (seconds of the same round)."""
    return statistics.median(a / b for a, b in zip(numerators, denominators, strict=True))


def trading_counts(topics: dict[str, int]) -> dict[str, int]:
    """Signals, fills and rejections over every broker, from messages counted by topic."""

    def total(suffix: str) -> int:
        return sum(count for topic, count in topics.items() if topic.endswith(suffix))

    return {
        "signals": total(".signals.raw"),
        "fills": total(".orders.filled"),
        "rejected": total(".signals.rejected"),
    }


def _rates(ticks: Market, repeat: int) -> list[dict[str, Any]]:
    batches, messages, tokens = ticks.batches(), ticks.messages(), ticks.spec.tokens()

    def make_pipeline() -> tuple[Dataflow, CountingSink]:
        sink = CountingSink(by_topic=True)
        return pipeline_flow(batches, tokens, sink), sink

    def make_bare() -> tuple[Dataflow, CountingSink]:
        sink = CountingSink()
        return bare_flow(messages, sink), sink

    return interleaved_runs([(make_pipeline, 1), (make_bare, 1)], repeat)


def replay_scenario(config: BenchConfig, log: Log) -> list[dict[str, Any]]:
    """Pipeline vs bare per-item flow, ticks/s on one worker, per instrument count."""
    rows = []
    for instruments in config.instruments:
        ticks = market(instruments, config.ticks)
        log(f"replay: {instruments:,} instruments, {ticks.ticks:,} ticks")
        pipeline, bare = _rates(ticks, config.repeat)  # a pipeline run, then a bare one, per round
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
                "pipeline_over_bare": median_ratio(bare["seconds_runs"], pipeline["seconds_runs"]),
                **rss(),
            }
        )
    return rows
