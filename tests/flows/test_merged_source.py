"""MergedSource: two sources in one input step, split again; partitions keep their keys and resume states."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.testing import TestingSink, run_main

from connectors.merged_source import Also, MergedSource
from dataflows.runtime.inputs import input_step


class _Counting(StatefulSourcePartition[Any, int]):
    """Emits ``name:0`` .. ``name:n-1``, one a batch, from its resume position."""

    def __init__(self, name: str, n: int, resume: int | None) -> None:
        self._name = name
        self._n = n
        self._at = resume or 0

    def next_batch(self) -> list[Any]:
        if self._at >= self._n:
            raise StopIteration
        self._at += 1
        return [f"{self._name}:{self._at - 1}"]

    def snapshot(self) -> int:
        return self._at


class _Parts(FixedPartitionedSource[Any, int]):
    def __init__(self, parts: dict[str, int]) -> None:
        self.parts = parts
        self.built: list[tuple[str, int | None]] = []

    def list_parts(self) -> list[str]:
        return list(self.parts)

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _Counting:
        self.built.append((for_part, resume_state))
        return _Counting(for_part, self.parts[for_part], resume_state)


def test_both_sources_items_come_out_on_their_own_streams(runner: Callable[[Dataflow], None]) -> None:
    flow = Dataflow("merged")
    first, also = _Parts({"t0": 3, "t1": 2}), _Parts({"configs": 2})
    items, others = input_step(flow, "in", first, also)
    assert others is not None
    got_first: list[Any] = []
    got_also: list[Any] = []
    op.output("first", items, TestingSink(got_first))
    op.output("also", others, TestingSink(got_also))

    runner(flow)

    assert sorted(got_first) == ["t0:0", "t0:1", "t0:2", "t1:0", "t1:1"]
    assert got_also == ["configs:0", "configs:1"], "unwrapped, in order"


def test_without_a_second_source_the_step_is_the_first_alone() -> None:
    flow = Dataflow("alone")
    items, others = input_step(flow, "in", _Parts({"t0": 2}), None)
    got: list[Any] = []
    op.output("out", items, TestingSink(got))

    run_main(flow)

    assert others is None
    assert got == ["t0:0", "t0:1"]


def test_partitions_keep_their_keys_and_resume_states_and_only_the_second_is_wrapped() -> None:
    first, also = _Parts({"t0": 5}), _Parts({"configs": 5})
    merged = MergedSource(first, also)

    assert merged.list_parts() == ["t0", "configs"]
    tick_part = merged.build_part("in", "t0", 3)
    config_part = merged.build_part("in", "configs", None)

    assert first.built == [("t0", 3)]
    assert also.built == [("configs", None)]
    assert tick_part.next_batch() == ["t0:3"]
    assert config_part.next_batch() == [Also("configs:0")]
    assert config_part.snapshot() == 1


def test_build_part_before_list_parts_still_finds_the_owner() -> None:
    merged = MergedSource(_Parts({"t0": 1}), _Parts({"configs": 1}))

    assert merged.build_part("in", "configs", None).next_batch() == [Also("configs:0")]


def test_a_partition_key_in_both_sources_is_refused() -> None:
    merged = MergedSource(_Parts({"p": 1, "q": 1}), _Parts({"q": 1}))

    with pytest.raises(ValueError, match=r"merged source: both sources have the partitions \['q'\]"):
        merged.list_parts()
