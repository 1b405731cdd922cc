"""The in-process pipeline gives identical outputs under one and two workers."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource

from alpha_panda.strategy_file import load_strategy_file
from connectors.simulator import MarketSpec, simulate_lines
from dataflows.clock import event_time_clock
from dataflows.pipeline import PipelineParams, build_pipeline
from schemas.codec import RawBatch, encode
from schemas.envelope import Outbound
from tests.flows.conftest import run_with_workers

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CONFIGS = load_strategy_file(EXAMPLES / "strategies.yaml")
EPOCH = datetime(2024, 1, 1, tzinfo=UTC)


def raw_ticks(lines: list[bytes], size: int = 64) -> list[RawBatch]:
    """The lines as the tick-file source emits them: batches of ``size``, line numbers as offsets."""
    return [
        RawBatch("market.ticks", lines[i : i + size], list(range(i, min(i + size, len(lines)))))
        for i in range(0, len(lines), size)
    ]


def simulated(instruments: int = 10, ticks: int = 400) -> list[bytes]:
    spec = MarketSpec(instruments=instruments, ticks_per_instrument=ticks, seed=3)
    return [line.rstrip(b"\n") for line in simulate_lines(spec)]


def pipeline_outputs(
    messages: list[RawBatch], run: Callable[[Dataflow], None], shards: int = 1
) -> list[Outbound]:
    flow = Dataflow("pipeline_test")
    raw = op.input("ticks", flow, TestingSource(messages))
    batches: list[list[Outbound]] = []
    published = build_pipeline(
        raw, CONFIGS, PipelineParams(shards=shards), clock=event_time_clock, dlq_clock=lambda _msg: EPOCH
    )
    op.output("out", published, TestingSink(batches))
    run(flow)
    return [message for batch in batches for message in batch]


def fingerprint(outputs: list[Outbound]) -> Counter[tuple[str, str, bytes]]:
    return Counter((o.topic, o.key, encode(o.envelope)) for o in outputs)


def final_snapshots(outputs: list[Outbound]) -> dict[tuple[str, str], dict]:
    """Last snapshot per account by event time (order across accounts may vary)."""
    best: dict[tuple[str, str], tuple] = {}
    for o in outputs:
        if o.topic.endswith(".pnl.snapshots"):
            data = o.envelope.data
            sort_key = (data.timestamp, data.total_value)
            account = (o.envelope.broker, data.strategy_id)
            if account not in best or sort_key > best[account][0]:
                best[account] = (sort_key, data)
    return {k: v[1] for k, v in best.items()}


@pytest.fixture(scope="module")
def reference() -> list[Outbound]:
    lines = simulated()
    lines.insert(7, b"{broken")
    return pipeline_outputs(raw_ticks(lines), lambda flow: run_with_workers(flow, 0))


@pytest.mark.parametrize("workers", [1, 2])
def test_workers_give_the_same_messages(reference: list[Outbound], workers: int) -> None:
    lines = simulated()
    lines.insert(7, b"{broken")
    outputs = pipeline_outputs(raw_ticks(lines), lambda flow: run_with_workers(flow, workers))
    assert fingerprint(outputs) == fingerprint(reference)
    assert final_snapshots(outputs) == final_snapshots(reference)


@pytest.mark.parametrize("workers", [0, 2])
def test_sharded_strategies_give_the_same_messages(reference: list[Outbound], workers: int) -> None:
    lines = simulated()
    lines.insert(7, b"{broken")
    outputs = pipeline_outputs(raw_ticks(lines), lambda flow: run_with_workers(flow, workers), shards=3)
    assert fingerprint(outputs) == fingerprint(reference)


def test_reference_run_exercises_every_stage(reference: list[Outbound]) -> None:
    topics = Counter(o.topic for o in reference)
    for broker in ("paper", "zerodha"):
        for stage in (
            "signals.raw",
            "signals.validated",
            "orders.submitted",
            "orders.filled",
            "pnl.snapshots",
        ):
            assert topics[f"{broker}.{stage}"] > 0, f"{broker}.{stage}"
    assert topics["market.ticks.dlq"] == 1
    assert "zerodha.orders.failed" not in topics


def test_brokers_never_share_topics_or_keys(reference: list[Outbound]) -> None:
    for o in reference:
        if o.topic.startswith(("paper.", "zerodha.")):
            assert o.topic.split(".")[0] == o.envelope.broker
    zerodha_strategies = {
        o.envelope.data.strategy_id for o in reference if o.topic == "zerodha.orders.filled"
    }
    assert zerodha_strategies <= {"momentum_fast", "mean_reversion"}
    modes = {o.envelope.data.execution_mode for o in reference if o.topic == "zerodha.orders.filled"}
    assert modes == {"dry_run"}
    statuses = {o.envelope.data.status for o in reference if o.topic == "zerodha.orders.submitted"}
    assert statuses == {"DRY_RUN"}


def test_order_ids_are_unique_per_broker(reference: list[Outbound]) -> None:
    for broker in ("paper", "zerodha"):
        ids = [o.envelope.data.order_id for o in reference if o.topic == f"{broker}.orders.filled"]
        assert len(ids) == len(set(ids))
