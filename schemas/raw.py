"""Messages as sources read them, before decoding: one at a time, or a batch in columns."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple


class RawMessage(NamedTuple):
    """A message as a source read it, before decoding.

    ``offset`` is the Kafka offset, or the line number of a tick file;
    ``headers`` are the Kafka record's, None when it has none.
    """

    topic: str
    key: bytes | None
    value: bytes
    partition: int | None = None
    offset: int | None = None
    timestamp: datetime | None = None
    headers: list[tuple[str, bytes]] | None = None


class RawBatch(NamedTuple):
    """Raw messages of one topic read together: the engine's item on the hot path.

    Columns, not one object per message: ``values[i]`` came from
    ``offsets[i]`` (a Kafka offset, or a file's line number) of
    ``partitions[i]`` (or ``partition`` for all), with ``keys[i]`` and
    ``timestamps[i]`` when the source has them.
    """

    topic: str
    values: list[bytes]
    offsets: list[int]
    partition: int | None = 0
    keys: list[bytes | None] | None = None
    partitions: list[int] | None = None
    timestamps: list[Any] | None = None

    def message(self, i: int) -> RawMessage:
        """The ``i``-th message as a :class:`RawMessage` (for dead letters)."""
        return RawMessage(
            self.topic,
            self.keys[i] if self.keys is not None else None,
            self.values[i],
            self.partitions[i] if self.partitions is not None else self.partition,
            self.offsets[i],
            self.timestamps[i] if self.timestamps is not None else None,
        )
