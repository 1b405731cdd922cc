"""The sweep's flow: the replay flow, writing only the topics a sweep's statistics read.

A sweep runs many accounts over one file; most of their messages (raw,
validated and rejected signals, submitted orders) are never read by the
statistics, yet encoding and writing them would cost more than trading.
This flow is :func:`dataflows.pipeline.replay_flow` with a filter in front of
the sink: it keeps the fills, the P&L snapshots and the tick dead letters.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow

from connectors.files import JsonlTopicSink, OutputCounts, ProgressCallback, TickFileSource
from dataflows.clock import event_time_clock
from dataflows.pipeline import PipelineParams, build_pipeline
from operators.strategy import StrategyConfig
from schemas.envelope import Outbound


def _fixed_dlq_clock(msg: Any) -> datetime:
    # As in the replay: dead letters carry a fixed time, so reruns are byte-identical.
    return datetime(1970, 1, 1, tzinfo=UTC)


def kept_replay_flow(  # replay_flow's arguments and the topics to keep
    ticks_path: Path,
    configs: Sequence[StrategyConfig],
    out_dir: Path,
    params: PipelineParams,
    keep: Collection[str],
    *,
    on_progress: ProgressCallback | None = None,
    counts: OutputCounts | None = None,
    batch_size: int = 4096,
) -> Dataflow:
    """A tick file in; ``out_dir/<topic>.jsonl`` out for the topics in ``keep`` only."""
    flow = Dataflow("alpha_panda_sweep")
    source = TickFileSource(ticks_path, batch_size=batch_size, on_progress=on_progress, tally=counts)
    raw = op.input("ticks", flow, source)
    params = dataclasses.replace(params, recoverable=False)  # a sweep's replay never resumes
    out = build_pipeline(raw, configs, params, clock=event_time_clock, dlq_clock=_fixed_dlq_clock)
    wanted = frozenset(keep)

    def kept(batch: list[Outbound]) -> list[Outbound] | None:
        mine = [message for message in batch if message.topic in wanted]
        return mine or None

    op.output("topics", op.filter_map("keep_topics", out, kept), JsonlTopicSink(out_dir, counts))
    return flow
