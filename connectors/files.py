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
from collections.abc import Callable, Iterator
from itertools import islice
from pathlib import Path
from typing import IO, Any

import orjson
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from connectors.parquet_ticks import is_parquet, iter_parquet_ticks, parquet_row_count
from schemas.codec import RawMessage, encode
from schemas.envelope import Outbound
from schemas.topics import MARKET_TICKS

ProgressCallback = Callable[[int], None]
"""Called with the number of bytes consumed since the previous call."""

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


class _TickFilePartition(StatefulSourcePartition[RawMessage, int]):
    def __init__(
        self,
        path: Path,
        resume_line: int | None,
        batch_size: int,
        on_progress: ProgressCallback | None,
    ) -> None:
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

    def _parquet_batch(self, rows: Iterator[tuple[int, bytes]]) -> list[RawMessage]:
        batch = [RawMessage(MARKET_TICKS, None, line, 0, row) for row, line in islice(rows, self._batch_size)]
        if not batch:
            raise StopIteration
        self._line_no = batch[-1].offset or self._line_no
        if self._on_progress is not None:
            self._on_progress(round(len(batch) * self._row_bytes))
        return batch

    def _lines(self) -> Iterator[tuple[int, bytes]]:
        for _ in range(self._batch_size):
            line = self._file.readline()
            if not line:
                return
            self._line_no += 1
            yield self._line_no, line

    def next_batch(self) -> list[RawMessage]:
        if self._parquet is not None:
            return self._parquet_batch(self._parquet)
        batch: list[RawMessage] = []
        consumed = 0
        for line_no, line in self._lines():
            consumed += len(line)
            stripped = line.strip()
            if not stripped:
                continue
            if self._is_csv:
                try:
                    stripped = _csv_line_to_json(self._header, stripped.decode("utf-8"))
                except UnicodeDecodeError:
                    pass  # keep the raw bytes: the decoder reports invalid UTF-8
            batch.append(RawMessage(MARKET_TICKS, None, stripped, 0, line_no))
        if consumed == 0:
            raise StopIteration
        if self._on_progress is not None:
            self._on_progress(consumed)
        return batch

    def snapshot(self) -> int:
        return self._line_no

    def close(self) -> None:
        if self._parquet is None:
            self._file.close()


class TickFileSource(FixedPartitionedSource[RawMessage, int]):
    """Read a JSONL, CSV or Parquet tick file as :class:`RawMessage` items, in file order.

    One partition (a file has one order). Resumes after the last line read.
    ``on_progress`` receives bytes consumed, for a progress bar.
    """

    def __init__(
        self,
        path: Path,
        *,
        batch_size: int = 1024,
        on_progress: ProgressCallback | None = None,
    ) -> None:
        self._path = Path(path)
        self._batch_size = batch_size
        self._on_progress = on_progress

    def list_parts(self) -> list[str]:
        """One partition: the file."""
        return [self._path.name]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _TickFilePartition:
        """Open the file, resuming after line ``resume_state`` if given."""
        return _TickFilePartition(self._path, resume_state, self._batch_size, self._on_progress)


class _JsonlTopicPartition(StatelessSinkPartition[Outbound]):
    def __init__(self, out_dir: Path, worker_index: int, worker_count: int) -> None:
        self._out_dir = out_dir
        self._suffix = "" if worker_count == 1 else f".worker{worker_index}"
        self._files: dict[str, io.BufferedWriter] = {}

    def _file(self, topic: str) -> io.BufferedWriter:
        handle = self._files.get(topic)
        if handle is None:
            handle = (self._out_dir / f"{topic}{self._suffix}.jsonl").open("wb")
            self._files[topic] = handle
        return handle

    def write_batch(self, items: list[Outbound]) -> None:
        for item in items:
            self._file(item.topic).write(encode(item.envelope) + b"\n")

    def close(self) -> None:
        for handle in self._files.values():
            handle.close()


class JsonlTopicSink(DynamicSink[Outbound]):
    """Write each :class:`Outbound` to ``out_dir/<topic>.jsonl``, one envelope a line.

    Files are created only for topics that receive messages. With several
    workers each writes its own ``<topic>.workerN.jsonl``.
    """

    def __init__(self, out_dir: Path) -> None:
        self._out_dir = Path(out_dir)
        self._out_dir.mkdir(parents=True, exist_ok=True)

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _JsonlTopicPartition:
        """One writer per worker."""
        return _JsonlTopicPartition(self._out_dir, worker_index, worker_count)
