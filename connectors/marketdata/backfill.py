"""Backfill many symbols with bounded concurrency, and replay bar history as ticks.

:func:`backfill` is I/O-agnostic: it is given ``fetch`` (symbol -> bars,
e.g. :func:`connectors.marketdata.alpaca.fetch_alpaca_bars` or
:func:`connectors.marketdata.yahoo.fetch_yahoo_bars` bound to their
options) and ``store`` (bars -> rows written, e.g.
:func:`connectors.marketdata.store.upsert_bars` bound to a connection).
Fetches run on up to ``concurrency`` threads; stores run one at a time on
the calling thread, so ``store`` may hold a single database connection.

:func:`history_ticks` turns time-ordered bars (from
:func:`connectors.marketdata.store.read_bars` or :func:`read_history_file`)
into ticks (close as ``last_price``), paced at ``speed`` times real time or
as fast as possible (``"max"``), with sleep and clock injected;
:class:`EventPacer` is that pacing alone, for callers that must not block
(a Bytewax source waits with ``next_awake`` instead of sleeping).
"""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

from connectors.marketdata.bars import Bar
from connectors.marketdata.errors import HistoryFormatError, MarketDataError
from schemas.events import MarketTick

Speed = float | Literal["max"]
HISTORY_COLUMNS: Final = ("instrument_token", "timestamp", "open", "high", "low", "close")


@dataclass(frozen=True, slots=True)
class BackfillProgress:
    """One symbol finished: ``done`` of ``total``, rows stored or the error."""

    symbol: str
    done: int
    total: int
    rows: int
    error: MarketDataError | None = None


@dataclass(frozen=True)
class BackfillReport:
    """Rows stored per symbol, and the error message of each symbol that failed."""

    loaded: dict[str, int] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every symbol loaded."""
        return not self.failed


def backfill(
    symbols: Sequence[str],
    fetch: Callable[[str], list[Bar]],
    store: Callable[[list[Bar]], int],
    *,
    concurrency: int = 4,
    on_progress: Callable[[BackfillProgress], None] | None = None,
) -> BackfillReport:
    """Fetch and store every symbol's bars, at most ``concurrency`` fetches at once.

    A symbol whose fetch raises a :class:`MarketDataError` (unknown symbol,
    rate limit, bad response) is reported in ``failed`` and the others go
    on; any other exception (a bug, a database failure) propagates.
    """
    if concurrency < 1:
        msg = f"backfill: concurrency must be >= 1, got {concurrency}"
        raise MarketDataError(msg)
    unique = list(dict.fromkeys(symbols))
    loaded: dict[str, int] = {}
    failed: dict[str, str] = {}
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="backfill") as pool:
        futures: dict[Future[list[Bar]], str] = {pool.submit(fetch, s): s for s in unique}
        for done, future in enumerate(as_completed(futures), start=1):
            symbol = futures[future]
            error: MarketDataError | None = None
            rows = 0
            try:
                rows = store(future.result())
                loaded[symbol] = rows
            except MarketDataError as err:
                error = err
                failed[symbol] = str(err)
            if on_progress is not None:
                on_progress(BackfillProgress(symbol, done, len(unique), rows, error))
    return BackfillReport(loaded=loaded, failed=failed)


def _timestamp(value: Any, where: str) -> datetime:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, tz=UTC)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.strip())
        except ValueError as err:
            msg = f"{where}: timestamp must be ISO-8601 or Unix seconds, got {value!r}"
            raise HistoryFormatError(msg) from err
    msg = f"{where}: timestamp must be ISO-8601 or Unix seconds, got {value!r}"
    raise HistoryFormatError(msg)


def bar_from_row(row: dict[str, Any], where: str) -> Bar:
    """Build a bar from a CSV/JSONL row (``where`` names file and line in errors).

    Columns: ``instrument_token``, ``timestamp`` (ISO-8601, naive = UTC, or
    Unix seconds), ``open``, ``high``, ``low``, ``close``, optional
    ``volume`` (default 0), ``symbol``, ``source``.

    Raises:
        HistoryFormatError: a missing or malformed field.
    """
    missing = [c for c in HISTORY_COLUMNS if row.get(c) in (None, "")]
    if missing:
        msg = f"{where}: missing field(s) {missing}"
        raise HistoryFormatError(msg)
    timestamp = _timestamp(row["timestamp"], where)
    try:
        return Bar(
            instrument_token=int(row["instrument_token"]),
            timestamp=timestamp,
            open=float(row["open"]),
            high=float(row["high"]),
            low=float(row["low"]),
            close=float(row["close"]),
            volume=int(float(row.get("volume") or 0)),
            symbol=row.get("symbol") or None,
            source=row.get("source") or "file",
        )
    except (TypeError, ValueError) as err:
        msg = f"{where}: {err}"
        raise HistoryFormatError(msg) from err
    except HistoryFormatError as err:
        msg = f"{where}: {err}"
        raise HistoryFormatError(msg) from err


def _rows(path: Path) -> Iterator[tuple[dict[str, Any], str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        if path.suffix.lower() == ".csv":
            for line, row in enumerate(csv.DictReader(handle), start=2):
                yield row, f"{path}:{line}"
            return
        for line, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except ValueError as err:
                msg = f"{path}:{line}: not JSON ({err})"
                raise HistoryFormatError(msg) from err
            if not isinstance(row, dict):
                msg = f"{path}:{line}: expected a JSON object, got {type(row).__name__}"
                raise HistoryFormatError(msg)
            yield row, f"{path}:{line}"


def read_history_file(path: Path | str) -> list[Bar]:
    """Read bars from a ``.csv`` (header row) or JSON-lines file, sorted by time then token.

    Raises:
        HistoryFormatError: names the file, line and field at fault.
    """
    path = Path(path)
    bars = [bar_from_row(row, where) for row, where in _rows(path)]
    bars.sort(key=lambda bar: (bar.timestamp, bar.instrument_token))
    return bars


def parse_speed(value: str | float) -> Speed:
    """Return a replay speed from ``"max"``, ``"1"``, ``"10"``, ``2.5``... (times real time).

    Raises:
        HistoryFormatError: not ``max`` and not a positive finite number.
    """
    if isinstance(value, str) and value.strip().lower() == "max":
        return "max"
    try:
        speed = float(value)
    except (TypeError, ValueError) as err:
        msg = f"replay speed must be a positive number or 'max', got {value!r}"
        raise HistoryFormatError(msg) from err
    if not (math.isfinite(speed) and speed > 0):
        msg = f"replay speed must be a positive number or 'max', got {value!r}"
        raise HistoryFormatError(msg)
    return speed


class EventPacer:
    """Tells how long to wait before an event so event time runs ``speed`` x real time.

    The first event anchors event time to the caller's clock (seconds, e.g.
    ``time.monotonic()``); each later event is due at ``anchor + (event -
    first event) / speed``. Targets are absolute, so a slow consumer does not
    accumulate drift, and an event older than the anchor is due at once.
    With ``speed`` ``"max"`` nothing ever waits.
    """

    def __init__(self, speed: Speed) -> None:
        self.speed = parse_speed(speed)
        self._anchor: tuple[datetime, float] | None = None

    def delay(self, event: datetime, now: float) -> float:
        """Return the seconds from ``now`` until ``event`` is due (<= 0: due now)."""
        if self.speed == "max":
            return 0.0
        if self._anchor is None:
            self._anchor = (event, now)
            return 0.0
        first_event, first_wall = self._anchor
        return first_wall + (event - first_event).total_seconds() / self.speed - now


def history_ticks(
    bars: Iterable[Bar],
    *,
    speed: Speed = "max",
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[MarketTick]:
    """Yield each bar as a tick, paced so event time runs ``speed`` x real time.

    ``bars``: in non-decreasing timestamp order.
    ``speed``: ``1`` (real time), ``10`` (ten times faster), any positive
        number, or ``"max"`` (no waiting).
    ``sleep``: called with seconds to wait; ``clock`` returns monotonic
        seconds. Pacing targets absolute times, so slow consumers do not
        accumulate drift (see :class:`EventPacer`).

    Raises:
        HistoryFormatError: a bar is earlier than the one before it.
    """
    if speed != "max" and not (isinstance(speed, int | float) and speed > 0):
        msg = f"history replay: speed must be a positive number or 'max', got {speed!r}"
        raise HistoryFormatError(msg)
    pacer = EventPacer(speed)
    previous: datetime | None = None
    for bar in bars:
        if previous is not None and bar.timestamp < previous:
            msg = (
                f"history replay: bars out of time order: {bar.timestamp.isoformat()} "
                f"after {previous.isoformat()} (token {bar.instrument_token})"
            )
            raise HistoryFormatError(msg)
        previous = bar.timestamp
        if speed != "max":
            wait = pacer.delay(bar.timestamp, clock())
            if wait > 0:
                sleep(wait)
        yield bar.to_tick()
