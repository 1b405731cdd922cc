"""The runtime pieces of a two-process replay: the backlog window, the one-writer sink, counts, failures."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from connectors.files import JsonlTopicSink, OutputCounts, OutputRoutingError
from dataflows.runtime.backlog import Backlog, GatedSource
from dataflows.runtime.failures import NotesFailures, first_failure, forget_failures, noting
from schemas.codec import dead_letter
from schemas.envelope import Outbound


class _Numbers(FixedPartitionedSource[int, int]):
    def list_parts(self) -> list[str]:
        return ["p"]

    def build_part(self, step_id: str, for_part: str, resume_state: Any) -> StatefulSourcePartition[int, int]:
        return _NumbersPart()


class _NumbersPart(StatefulSourcePartition[int, int]):
    def __init__(self) -> None:
        self.read = 0

    def next_batch(self) -> list[int]:
        self.read += 1
        return [self.read]

    def snapshot(self) -> int:
        return self.read


def test_the_source_reads_nothing_while_the_window_is_full_and_asks_to_be_polled_again() -> None:
    backlog = Backlog(window=2)
    part = GatedSource(_Numbers(), backlog).build_part("in", "p", None)
    for _ in range(3):
        backlog.hand_over()
    assert not backlog.has_room()
    before = datetime.now(UTC)
    assert list(part.next_batch()) == []
    awake = part.next_awake()
    assert awake is not None and awake >= before
    backlog.finish_one()
    assert list(part.next_batch()) == [1]
    assert part.next_awake() is None
    assert (backlog.handed, backlog.done) == (3, 1)


def test_batches_done_in_a_fork_count_here() -> None:
    backlog = Backlog(window=0)
    backlog.hand_over()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        backlog.finish_one()
        backlog.finish_one()
        os._exit(0)
    os.waitpid(pid, 0)
    assert backlog.done == 2
    assert backlog.has_room()


def _message(topic: str) -> Outbound:
    letter = dead_letter(
        topic="market.ticks",
        key=None,
        value=b"x",
        error_type="poison",
        error_class="DecodeError",
        error_message="m",
        service_name="t",
        dlq_timestamp=datetime(1970, 1, 1, tzinfo=UTC),
    )
    return Outbound(topic, None, letter, None)


def test_one_writer_names_files_by_topic_and_the_other_worker_must_get_nothing(tmp_path: Path) -> None:
    sink = JsonlTopicSink(tmp_path, writer=1)
    idle, writer = sink.build("out", 0, 2), sink.build("out", 1, 2)
    idle.write_batch([])
    writer.write_batch([[_message("market.ticks.dlq")]])
    writer.close()
    idle.close()
    assert [p.name for p in tmp_path.iterdir()] == ["market.ticks.dlq.jsonl"]
    assert sink.counts.topic_counts() == {"market.ticks.dlq": 1}
    with pytest.raises(OutputRoutingError, match="JSONL sink: worker 0 got messages, but one other worker"):
        idle.write_batch([_message("market.ticks.dlq")])


def test_counts_of_two_processes_merge(tmp_path: Path) -> None:
    here, there = OutputCounts(), OutputCounts()
    here.lines_read = 10
    here.messages[("market.ticks.dlq", None)] = 2
    there.messages.update({("market.ticks.dlq", None): 1, ("paper.signals.raw", "mom"): 4})
    there.last_snapshots[("paper", "mom")] = "snapshot"
    here.merge(there.portable())
    assert here.topic_counts() == {"market.ticks.dlq": 3, "paper.signals.raw": 4}
    assert here.lines_read == 10
    assert here.last_snapshots == {("paper", "mom"): "snapshot"}


class _Fails:
    def __init__(self, resume: Any) -> None:
        self.calls = 0

    def on_item(self, value: Any) -> Any:
        self.calls += 1
        msg = f"bad {value}"
        raise ValueError(msg)

    def on_eof(self) -> Any:
        msg = "eof"
        raise KeyError(msg)


def test_the_first_failure_of_a_step_is_noted_and_still_raised() -> None:
    forget_failures()
    logic = noting(_Fails)(None)
    assert isinstance(logic, NotesFailures)
    with pytest.raises(ValueError, match="bad 1"):
        logic.on_item(1)
    with pytest.raises(KeyError):
        logic.on_eof()
    assert str(first_failure()) == "bad 1"
    forget_failures()
    assert first_failure() is None
