"""The first error a flow's own code raised in this process, for runs where Bytewax loses it.

In a cluster of processes, Bytewax 0.21 reports a worker's error in every
process as a panic of its send thread (``PanicException: Send thread
panic``), without the error itself. The steps, source and sink of a
two-process replay are wrapped to note the first exception they raise
here, so that the replay can say what went wrong.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.operators import StatefulLogic
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from connectors.merged_source import WrappedPartition
from dataflows.delegating import Delegating

T = TypeVar("T")

_first: list[BaseException] = []


def note_failure(err: BaseException) -> None:
    """Keep ``err`` unless an earlier one is kept."""
    if not _first:
        _first.append(err)


def first_failure() -> BaseException | None:
    """The first error noted in this process since the last :func:`forget_failures`, if any."""
    return _first[0] if _first else None


def forget_failures() -> None:
    """Start afresh (before a run)."""
    _first.clear()


class NotesFailures(Delegating):
    """``inner`` unchanged, except that an exception it raises is noted first."""

    def on_item(self, value: Any) -> tuple[Iterable[Any], bool]:
        """The inner logic's."""
        return noted(self._inner.on_item, value)

    def on_eof(self) -> tuple[Iterable[Any], bool]:
        """The inner logic's."""
        return noted(self._inner.on_eof)

    def on_notify(self) -> tuple[Iterable[Any], bool]:
        """The inner logic's."""
        return noted(self._inner.on_notify)


def noted(call: Callable[..., T], *args: Any) -> T:
    """``call(*args)``; an exception it raises is noted, then raised."""
    try:
        return call(*args)
    except BaseException as err:
        note_failure(err)
        raise


def noting(build: Any) -> Any:
    """A stateful step's builder whose logics note their failures."""

    def built(resume: Any) -> StatefulLogic[Any, Any, Any]:
        return NotesFailures(noted(build, resume))

    return built


class _NotingSourcePartition(WrappedPartition):
    def next_batch(self) -> Iterable[Any]:
        try:
            return self._inner.next_batch()
        except StopIteration:
            raise
        except BaseException as err:
            note_failure(err)
            raise


class NotingSource(FixedPartitionedSource[Any, Any]):
    """``inner``'s partitions, whose read errors are noted first."""

    def __init__(self, inner: FixedPartitionedSource[Any, Any]) -> None:
        self._inner = inner

    def list_parts(self) -> list[str]:
        """The inner source's."""
        return self._inner.list_parts()

    def build_part(self, step_id: str, for_part: str, resume_state: Any) -> StatefulSourcePartition[Any, Any]:
        """The inner source's partition, noting its errors."""
        return _NotingSourcePartition(noted(self._inner.build_part, step_id, for_part, resume_state))


class _NotingSinkPartition(StatelessSinkPartition[Any]):
    def __init__(self, inner: StatelessSinkPartition[Any]) -> None:
        self._inner = inner

    def write_batch(self, items: list[Any]) -> None:
        noted(self._inner.write_batch, items)

    def close(self) -> None:
        noted(self._inner.close)


class NotingSink(DynamicSink[Any]):
    """``inner``'s partitions, whose write errors are noted first."""

    def __init__(self, inner: DynamicSink[Any]) -> None:
        self._inner = inner

    def build(self, step_id: str, worker_index: int, worker_count: int) -> StatelessSinkPartition[Any]:
        """The inner sink's partition, noting its errors."""
        return _NotingSinkPartition(self._inner.build(step_id, worker_index, worker_count))
