"""Parquet tick files, read row group by row group, as producer-form JSON lines.

A Parquet tick file has one row per tick and at least the columns
``instrument_token``, ``last_price`` and ``timestamp`` (a timestamp column,
or ISO-8601 text); any other column (``volume``, ``symbol``, an ``ohlc``
struct, ...) becomes a field of ``data`` under its own name. Each row becomes
the line a JSONL tick file would hold for it,
``{"type": "market_tick", "data": {...}}``, so the contract decoder (and the
DLQ for what it rejects) treats both files alike.

Rows are numbered from 1 in file order (the ``offset`` of a tick-file
message, like a JSONL line number). A row the reader can already tell is bad
(a required cell that is null, a number that is NaN or infinite, bytes that
are not UTF-8) carries a ``problem`` naming the row and the column; its
``line`` omits or spells out the bad cell, so the decoder rejects it too.
Only one row group is held in memory at a time, converted to Python
objects in slices of :data:`SLICE_ROWS` rows.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import orjson

from connectors.errors import ConnectorError

REQUIRED_COLUMNS: Final = ("instrument_token", "last_price", "timestamp")
PARQUET_SUFFIXES: Final = (".parquet", ".pq")
SLICE_ROWS: Final = 65_536


class ParquetTickFileError(ConnectorError):
    """A Parquet tick file cannot be read, or lacks a required column."""


@dataclass(frozen=True, slots=True)
class ParquetTick:
    """One row: its 1-based ``row`` number, its producer-form ``line``, and any ``problem`` seen.

    ``problem`` is None for a row the reader found nothing wrong with (the
    decoder still validates it), else e.g. ``row 7: last_price is null``.
    """

    row: int
    line: bytes
    problem: str | None = None


def is_parquet(path: Path) -> bool:
    """Tell a Parquet tick file by its suffix (``.parquet``, ``.pq``)."""
    return path.suffix.lower() in PARQUET_SUFFIXES


def _open(path: Path) -> Any:
    import pyarrow.parquet as pq  # only Parquet files need pyarrow

    try:
        parquet = pq.ParquetFile(path)
    except (OSError, ValueError) as err:  # pyarrow.ArrowInvalid is a ValueError
        msg = f"parquet ticks: cannot read {path}: {err}"
        raise ParquetTickFileError(msg) from err
    missing = [c for c in REQUIRED_COLUMNS if c not in parquet.schema_arrow.names]
    if missing:
        needed = ", ".join(REQUIRED_COLUMNS)
        msg = f"parquet ticks: {path} has no column {', '.join(missing)} (needs {needed})"
        raise ParquetTickFileError(msg)
    return parquet


def parquet_row_count(path: Path) -> int:
    """Rows in the Parquet file at ``path`` (from its footer, nothing else read).

    Raises:
        ParquetTickFileError: not a readable Parquet tick file.
    """
    return int(_open(path).metadata.num_rows)


class _BadCell(Exception):  # internal signal, never escapes this module
    def __init__(self, what: str, shown: Any) -> None:
        self.what = what
        self.shown = shown


def _plain(value: Any) -> Any:
    """A cell as a JSON-ready value; raise :class:`_BadCell` for one JSON cannot hold."""
    if isinstance(value, float) and not math.isfinite(value):
        msg = f"is not a finite number ({value})"
        raise _BadCell(msg, str(value))
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        if not value.is_finite():
            msg = f"is not a finite number ({value})"
            raise _BadCell(msg, str(value))
        return float(value)
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            msg = "is not UTF-8 text"
            raise _BadCell(msg, value.decode("utf-8", "backslashreplace")) from None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _row(number: int, names: list[str], cells: tuple[Any, ...]) -> ParquetTick:
    data: dict[str, Any] = {}
    problems: list[str] = []
    for name, value in zip(names, cells, strict=True):
        if value is None:
            if name in REQUIRED_COLUMNS:
                problems.append(f"{name} is null")
            continue
        try:
            plain = _plain(value)
        except _BadCell as bad:
            problems.append(f"{name} {bad.what}")
            plain = bad.shown
        if name == "instrument_token" and isinstance(plain, float) and plain.is_integer():
            plain = int(plain)  # a token column stored as float (e.g. by pandas with nulls)
        data[name] = plain
    line = orjson.dumps({"type": "market_tick", "data": data})
    problem = f"row {number}: {'; '.join(problems)}" if problems else None
    return ParquetTick(number, line, problem)


def iter_parquet_ticks(path: Path, *, after_row: int = 0) -> Iterator[ParquetTick]:
    """Yield every row of the Parquet tick file ``path`` after row ``after_row``, in file order.

    In: a path, and the last row already consumed (0: from the start; a
    resumed source passes its snapshot). Out: one :class:`ParquetTick` per
    row, rows numbered from 1. Row groups wholly before ``after_row`` are
    not read at all.

    Raises:
        ParquetTickFileError: the file is not readable Parquet, or lacks
            a column of :data:`REQUIRED_COLUMNS`.
    """
    parquet = _open(path)
    first_row = 1
    for group in range(parquet.num_row_groups):
        rows = parquet.metadata.row_group(group).num_rows
        if first_row + rows - 1 <= after_row:
            first_row += rows
            continue
        table = parquet.read_row_group(group)
        names = table.column_names
        for start in range(0, rows, SLICE_ROWS):
            part = table.slice(start, SLICE_ROWS)
            columns = [column.to_pylist() for column in part.columns]
            for offset, cells in enumerate(zip(*columns, strict=True)):
                number = first_row + start + offset
                if number > after_row:
                    yield _row(number, names, cells)
        first_row += rows
