"""How far one worker may run ahead of another that does the rest of its work: a window of batches.

Bytewax has no back-pressure between workers. With the accounts apart
(``replay --processes 2``), worker 0 reads, decodes and runs the strategies
faster than worker 1 trades and writes, and what it hands over would pile
up in worker 1's memory, more the longer the file. A :class:`Backlog`
counts the batches handed over (worker 0) and the batches done (worker 1,
in memory shared across the fork), and the source reads nothing while
more than ``window`` are outstanding: it returns no batch and asks to be
polled again shortly, so that the worker never blocks. Memory stays flat
in the length of the input.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

WINDOW: Final = 8
"""Batches handed over and not yet done, at most, before the source waits."""

WAIT_S: Final = 0.0002
"""Seconds between two looks at the other worker's progress while the source has no room."""

_COUNT: Final = struct.Struct("q")


class Backlog:
    """Batches handed over (counted where they are handed) against batches done (counted in shared memory).

    Build it before the fork: both processes then see the one count of
    batches done. One worker hands over, one does; each count has one writer.
    """

    def __init__(self, window: int = WINDOW) -> None:
        self.window = window
        self._done = mmap.mmap(-1, _COUNT.size)  # anonymous and shared: a fork sees the same page
        self._handed = 0

    @property
    def handed(self) -> int:
        """Batches handed over so far."""
        return self._handed

    @property
    def done(self) -> int:
        """Batches done so far (by whichever process does them)."""
        return _COUNT.unpack_from(self._done, 0)[0]

    def hand_over(self) -> None:
        """Count one batch handed over."""
        self._handed += 1

    def finish_one(self) -> None:
        """Count one batch done."""
        _COUNT.pack_into(self._done, 0, self.done + 1)

    def has_room(self) -> bool:
        """Whether at most ``window`` handed batches are not done yet."""
        return self._handed - self.done <= self.window


class _GatedPartition(StatefulSourcePartition[Any, Any]):
    def __init__(self, inner: StatefulSourcePartition[Any, Any], backlog: Backlog) -> None:
        self._inner = inner
        self._backlog = backlog
        self._awake: datetime | None = None

    def next_batch(self) -> Iterable[Any]:
        # Never block the worker: what it handed over leaves only once this step is done.
        if not self._backlog.has_room():
            self._awake = datetime.now(UTC) + timedelta(seconds=WAIT_S)
            return []
        self._awake = None
        return self._inner.next_batch()

    def next_awake(self) -> datetime | None:
        return self._awake if self._awake is not None else self._inner.next_awake()

    def snapshot(self) -> Any:
        return self._inner.snapshot()

    def close(self) -> None:
        self._inner.close()


class GatedSource(FixedPartitionedSource[Any, Any]):
    """``inner``, whose partitions read a batch only while ``backlog`` has room."""

    def __init__(self, inner: FixedPartitionedSource[Any, Any], backlog: Backlog) -> None:
        self._inner = inner
        self._backlog = backlog

    def list_parts(self) -> list[str]:
        """The inner source's."""
        return self._inner.list_parts()

    def build_part(self, step_id: str, for_part: str, resume_state: Any) -> StatefulSourcePartition[Any, Any]:
        """The inner source's partition, waiting for room before each read."""
        return _GatedPartition(self._inner.build_part(step_id, for_part, resume_state), self._backlog)
