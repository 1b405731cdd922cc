"""Tick files in, per-topic JSONL files out: the I/O of ``alpha-panda replay``.

A tick file is JSONL (one producer-form ``market_tick`` message per line),
CSV with a header naming at least ``instrument_token,last_price,timestamp``
(optional ``volume,symbol``), or Parquet (``.parquet``/``.pq``, read row group
by row group by :mod:`connectors.parquet_ticks`; ``offset`` is the row
number). Lines are passed on as raw bytes so that decoding, and sending bad
lines to the DLQ, happen in the dataflow.
"""

from __future__ import annotations

import csv
import io
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from itertools import islice
from pathlib import Path
from typing import IO, Any, Final

import orjson
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from connectors.file_writer import BackgroundWriter
from connectors.parquet_ticks import is_parquet, iter_parquet_ticks, parquet_row_count
from schemas.codec import RawBatch, encode_lines
from schemas.envelope import Outbound, PnlEnvelope, messages_of
from schemas.errors import AlphaPandaError
from schemas.topics import MARKET_TICKS

ProgressCallback = Callable[[int], None]
"""Called with the number of bytes consumed since the previous call."""


class OutputRoutingError(AlphaPandaError):
    """A message reached a sink partition that writes nothing: a flow's wiring is wrong."""


READ_BYTES: Final = 1 << 20
"""Bytes a tick file is read in, split at newlines into lines."""

_CSV_NUMERIC = {"instrument_token": int, "last_price": float, "volume": int}


def _csv_line_to_json(header: list[str], line: str) -> bytes:
    """Turn one CSV row into producer-form JSON; bad cells stay visible as text."""
    cells = next(csv.reader([line]))
    data: dict[str, Any] = {}
    for name, cell in zip(header, cells, strict=False):
        if cell == "":
            continue
        convert = _CSV_NUMERIC.get(name)
        try:
            data[name] = convert(cell) if convert else cell
        except ValueError:
            data[name] = cell  # the decoder names the field and the bad value
    return orjson.dumps({"type": "market_tick", "data": data})


class _TickFilePartition(StatefulSourcePartition[RawBatch, int]):
    def __init__(
        self,
        path: Path,
        resume_line: int | None,
        batch_size: int,
        on_progress: ProgressCallback | None,
        tally: OutputCounts | None = None,
    ) -> None:
        self._tally = tally
        self._parquet: Iterator[tuple[int, bytes]] | None = None
        if is_parquet(path):
            # Bytes for the progress bar: the file's size spread evenly over its rows.
            self._row_bytes = path.stat().st_size / max(1, parquet_row_count(path))
            rows = iter_parquet_ticks(path, after_row=resume_line or 0)
            self._parquet = ((tick.row, tick.line) for tick in rows)
            self._line_no = resume_line or 0
            self._batch_size = batch_size
            self._on_progress = on_progress
            return
        self._file: IO[bytes] = path.open("rb")
        self._pending: list[bytes] = []
        self._tail = b""
        self._at_end = self._unterminated = False
        self._is_csv = path.suffix.lower() == ".csv"
        self._header: list[str] = []
        self._line_no = 0
        self._batch_size = batch_size
        self._on_progress = on_progress
        if self._is_csv:
            first = self._file.readline()
            self._header = next(csv.reader([first.decode("utf-8-sig")]))
            self._line_no = 1
        skip_to = resume_line or self._line_no
        while self._line_no < skip_to and self._file.readline():
            self._line_no += 1

    def _parquet_batch(self, rows: Iterator[tuple[int, bytes]]) -> list[RawBatch]:
        chunk = list(islice(rows, self._batch_size))
        if not chunk:
            raise StopIteration
        self._line_no = chunk[-1][0]
        if self._on_progress is not None:
            self._on_progress(round(len(chunk) * self._row_bytes))
        if self._tally is not None:
            self._tally.lines_read += len(chunk)
        return [RawBatch(MARKET_TICKS, [line for _row, line in chunk], [row for row, _line in chunk])]

    def _lines(self) -> tuple[list[bytes], int]:
        """The next ``batch_size`` lines, without their newlines, and the bytes they took in the file.

        The file is read in chunks of :data:`READ_BYTES` split at newlines
        (half the time of iterating it line by line); a last line without a
        newline is a line too.
        """
        pending = self._pending
        while len(pending) < self._batch_size and not self._at_end:
            chunk = self._file.read(READ_BYTES)
            if not chunk:
                self._at_end = True
                if self._tail:
                    pending.append(self._tail)
                    self._unterminated = True
                break
            parts = (self._tail + chunk).split(b"\n")
            self._tail = parts.pop()
            pending.extend(parts)
        lines = pending[: self._batch_size]
        del pending[: self._batch_size]
        consumed = sum(map(len, lines)) + len(lines)
        if self._unterminated and not pending and lines:
            consumed -= 1
        return lines, consumed

    def next_batch(self) -> list[RawBatch]:
        if self._parquet is not None:
            return self._parquet_batch(self._parquet)
        lines, consumed = self._lines()
        if not lines:
            raise StopIteration
        first = self._line_no + 1
        self._line_no += len(lines)
        stripped = [line.strip() for line in lines]
        if all(stripped) and not self._is_csv:
            values = stripped
            offsets = list(range(first, first + len(lines)))
        else:
            values, offsets = [], []
            for line_no, value in enumerate(stripped, start=first):
                if not value:
                    continue
                if self._is_csv:
                    try:
                        value = _csv_line_to_json(self._header, value.decode("utf-8"))
                    except UnicodeDecodeError:
                        pass  # keep the raw bytes: the decoder reports invalid UTF-8
                values.append(value)
                offsets.append(line_no)
        if self._on_progress is not None:
            self._on_progress(consumed)
        if self._tally is not None:
            self._tally.lines_read += len(values)
        return [RawBatch(MARKET_TICKS, values, offsets)] if values else []

    def snapshot(self) -> int:
        return self._line_no

    def close(self) -> None:
        if self._parquet is None:
            self._file.close()


class TickFileSource(FixedPartitionedSource[RawBatch, int]):
    """Read a JSONL, CSV or Parquet tick file as :class:`RawBatch` items of ``batch_size`` lines, in order.

    One partition (a file has one order). Resumes after the last line read.
    ``on_progress`` receives bytes consumed, for a progress bar.
    """

    def __init__(
        self,
        path: Path,
        *,
        batch_size: int = 4096,
        on_progress: ProgressCallback | None = None,
        tally: OutputCounts | None = None,
    ) -> None:
        self._path = Path(path)
        self._batch_size = batch_size
        self._on_progress = on_progress
        self._tally = tally

    def list_parts(self) -> list[str]:
        """One partition: the file."""
        return [self._path.name]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _TickFilePartition:
        """Open the file, resuming after line ``resume_state`` if given."""
        return _TickFilePartition(self._path, resume_state, self._batch_size, self._on_progress, self._tally)


def read_tick_batches(path: Path, step_id: str = "read") -> Iterator[RawBatch]:
    """Every :class:`RawBatch` of a tick file, in order, outside a dataflow (the file is closed after)."""
    partition = TickFileSource(path).build_part(step_id, str(path), None)
    try:
        while True:
            try:
                batches = partition.next_batch()
            except StopIteration:
                return
            yield from batches
    finally:
        partition.close()


PortableCounts = tuple[dict[tuple[str, str | None], int], int, dict[tuple[str, str], Any]]
"""An :class:`OutputCounts` as plain values: messages, lines read, last snapshots."""


class OutputCounts:
    """What a sink wrote, counted as it streams (nothing re-reads the files).

    ``messages[(topic, strategy_id)]``: messages per topic and account key
    (the strategy id every broker event is partitioned by; ``None`` for
    dead letters of ticks). ``last_snapshots[(broker, strategy_id)]``: the
    latest ``pnl_snapshot`` data of each account.
    """

    def __init__(self) -> None:
        self.messages: Counter[tuple[str, str | None]] = Counter()
        self.lines_read = 0
        """Non-blank input lines read (the CSV header excluded), when a source reports them."""
        self.last_snapshots: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def add(self, by_topic: dict[str, list[Outbound]]) -> None:
        """Count one written batch."""
        with self._lock:
            messages = self.messages
            for topic, items in by_topic.items():
                messages.update([(topic, item.partition_key) for item in items])  # counted in C
                last = items[-1].envelope
                if isinstance(last, PnlEnvelope):
                    for item in items:
                        data = item.envelope.data
                        self.last_snapshots[data.broker, data.strategy_id] = data

    def portable(self) -> PortableCounts:
        """The counts as plain values, for :meth:`merge` in another process."""
        with self._lock:
            return dict(self.messages), self.lines_read, dict(self.last_snapshots)

    def merge(self, portable: PortableCounts) -> None:
        """Add another sink's counts (:meth:`portable`); the other's snapshot wins for an account in both."""
        messages, lines_read, last_snapshots = portable
        with self._lock:
            self.messages.update(messages)
            self.lines_read += lines_read
            self.last_snapshots.update(last_snapshots)

    def topic_counts(self) -> dict[str, int]:
        """Messages per topic."""
        totals: Counter[str] = Counter()
        for (topic, _key), count in self.messages.items():
            totals[topic] += count
        return dict(totals)


class _JsonlTopicPartition(StatelessSinkPartition[Any]):
    def __init__(
        self, out_dir: Path, worker_index: int, worker_count: int, counts: OutputCounts, writer: int | None
    ) -> None:
        self._out_dir = out_dir
        self._suffix = "" if worker_count == 1 or writer is not None else f".worker{worker_index}"
        self._refuse = writer is not None and worker_index != writer
        self._worker = worker_index
        self._files: dict[str, io.BufferedWriter] = {}
        self._counts = counts
        self._writer = BackgroundWriter(name=f"jsonl-writer-{worker_index}")

    def _file(self, topic: str) -> io.BufferedWriter:
        handle = self._files.get(topic)
        if handle is None:
            handle = (self._out_dir / f"{topic}{self._suffix}.jsonl").open("wb")
            self._files[topic] = handle
        return handle

    def write_batch(self, items: list[Any]) -> None:
        if self._refuse and items:
            msg = f"JSONL sink: worker {self._worker} got messages, but one other worker writes every file"
            raise OutputRoutingError(msg)
        by_topic: dict[str, list[Outbound]] = {}
        for message in messages_of(items):
            group = by_topic.get(message.topic)
            if group is None:
                group = by_topic[message.topic] = []
            group.append(message)
        write = self._writer.write
        for topic, group in by_topic.items():
            write(self._file(topic), encode_lines([m.envelope for m in group]))
        self._counts.add(by_topic)

    def close(self) -> None:
        self._writer.close()


class JsonlTopicSink(DynamicSink[Any]):
    """Write each :class:`Outbound` to ``out_dir/<topic>.jsonl``, one envelope a line.

    Items are messages or lists of messages (a batch of the hot path).
    Files are created only for topics that receive messages. With several
    workers each writes its own ``<topic>.workerN.jsonl``, unless the flow
    brings every message to one worker, ``writer``: that one then writes
    ``<topic>.jsonl`` and a message on another worker is an error.
    ``counts`` tallies what was written, as it is written. The bytes reach
    the disk from a thread of their own
    (:class:`connectors.file_writer.BackgroundWriter`), in order, all of
    them by the time the flow has ended.
    """

    def __init__(
        self, out_dir: Path, counts: OutputCounts | None = None, *, writer: int | None = None
    ) -> None:
        self._out_dir = Path(out_dir)
        self._out_dir.mkdir(parents=True, exist_ok=True)
        self.counts = counts if counts is not None else OutputCounts()
        self._writer = writer

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _JsonlTopicPartition:
        """One writer per worker."""
        return _JsonlTopicPartition(self._out_dir, worker_index, worker_count, self.counts, self._writer)
