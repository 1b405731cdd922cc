"""Flows that never resume skip their state snapshots; recoverable ones store them (real Bytewax recovery)."""

from __future__ import annotations

import pickle
from datetime import timedelta
from pathlib import Path

import pytest
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import run_main

from alpha_panda.bench.harness import CountingSink, market, pipeline_flow
from alpha_panda.bench.scenarios.memory import stored_snapshots
from dataflows.pipeline import PipelineParams
from operators.shard import ShardState


def stored_trading_states(tmp_path: Path, *, recoverable: bool, groups: int = 1) -> tuple[int, list[object]]:
    ticks = market(10, 400)
    tmp_path.mkdir()
    init_db_dir(tmp_path, 1)
    sink = CountingSink()
    params = PipelineParams(groups=groups, shards=2 if groups > 1 else 1)
    flow = pipeline_flow(ticks.batches(), ticks.spec.tokens(), sink, params, recoverable=recoverable)
    run_main(flow, epoch_interval=timedelta(days=1), recovery_config=RecoveryConfig(str(tmp_path)))
    steps = (".trading.", ".timeline.", ".groups.", ".accounts.")  # the stateful steps that hold state
    blobs = [
        b
        for step, found in stored_snapshots(tmp_path).items()
        if any(s in step for s in steps)
        for b in found
    ]
    return sink.total, [pickle.loads(blob) for blob in blobs]  # noqa: S301 - written by this test


@pytest.mark.parametrize("groups", [1, 3])
def test_a_flow_that_never_resumes_stores_no_state_and_says_the_same(tmp_path: Path, groups: int) -> None:
    kept, states = stored_trading_states(tmp_path / "kept", recoverable=True, groups=groups)
    skipped, nones = stored_trading_states(tmp_path / "skipped", recoverable=False, groups=groups)
    assert kept == skipped > 0  # the same messages either way
    assert states and all(state is not None for state in states)
    assert nones and all(state is None for state in nones)
    if groups == 1:
        assert [type(state[1]) for state in states] == [ShardState]  # type: ignore[index]
