import json
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from connectors.marketdata.backfill import (
    BackfillProgress,
    backfill,
    history_ticks,
    read_history_file,
)
from connectors.marketdata.bars import Bar
from connectors.marketdata.errors import HistoryFormatError, SymbolNotFoundError
from schemas.events import Ohlc

T0 = datetime(2024, 1, 2, 14, 30, tzinfo=UTC)


def bar(token: int, minutes: int, close: float) -> Bar:
    return Bar(token, T0 + timedelta(minutes=minutes), close, close + 1, close - 1, close, 10)


def test_backfill_bounds_concurrency_reports_progress_and_failures() -> None:
    running = 0
    peak = 0
    lock = threading.Lock()
    stored: list[list[Bar]] = []

    def fetch(symbol: str) -> list[Bar]:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.02)
        with lock:
            running -= 1
        if symbol == "BAD":
            step = "fetch"
            raise SymbolNotFoundError(step, symbol, "no data")
        return [bar(len(symbol), 0, 100.0), bar(len(symbol), 1, 101.0)]

    def store(bars: list[Bar]) -> int:
        stored.append(bars)
        return len(bars)

    progress: list[BackfillProgress] = []
    symbols = ["A", "BB", "BAD", "CCC", "DDDD", "EEEEE", "A"]
    report = backfill(symbols, fetch, store, concurrency=2, on_progress=progress.append)
    assert peak == 2
    assert report.loaded == {"A": 2, "BB": 2, "CCC": 2, "DDDD": 2, "EEEEE": 2}
    assert list(report.failed) == ["BAD"] and "unknown symbol 'BAD'" in report.failed["BAD"]
    assert not report.ok
    assert [p.done for p in progress] == [1, 2, 3, 4, 5, 6]
    assert {p.total for p in progress} == {6}
    assert [p.symbol for p in progress if p.error] == ["BAD"]
    assert len(stored) == 5


def test_history_file_csv_and_jsonl_sorted(tmp_path: Path) -> None:
    csv_file = tmp_path / "bars.csv"
    csv_file.write_text(
        "instrument_token,timestamp,open,high,low,close,volume,symbol\n"
        "2,2024-01-02T14:31:00Z,10,11,9,10.5,7,B\n"
        "1,2024-01-02T14:31:00+00:00,100,102,99,101,5,A\n"
        "1,2024-01-02T14:30:00,100,101,99,100.5,,A\n"
    )
    bars = read_history_file(csv_file)
    assert [(b.instrument_token, b.timestamp.minute, b.close) for b in bars] == [
        (1, 30, 100.5),
        (1, 31, 101.0),
        (2, 31, 10.5),
    ]
    assert bars[0].volume == 0 and bars[0].timestamp.tzinfo is not None
    jsonl = tmp_path / "bars.jsonl"
    jsonl.write_text(
        json.dumps(
            {
                "instrument_token": 3,
                "timestamp": 1704205860,
                "open": 1,
                "high": 2,
                "low": 0.5,
                "close": 1.5,
                "volume": 9,
            }
        )
        + "\n\n"
        + json.dumps(
            {
                "instrument_token": 3,
                "timestamp": "2024-01-02T14:30:00Z",
                "open": 1,
                "high": 2,
                "low": 0.5,
                "close": 1.25,
            }
        )
        + "\n"
    )
    assert [b.close for b in read_history_file(jsonl)] == [1.25, 1.5]


COLS = "instrument_token,timestamp,open,high,low,close"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (f"{COLS[:-6]}\n1,2024-01-02,1,1,1\n", r"bars.csv:2: missing field\(s\) \['close'\]"),
        (f"{COLS}\n1,yesterday,1,1,1,1\n", "bars.csv:2: timestamp must be"),
        (f"{COLS}\n1,2024-01-02,1,1,1,-3\n", "bars.csv:2: .*close must be finite and > 0, got -3"),
        (f"{COLS}\nx,2024-01-02,1,1,1,1\n", "bars.csv:2: invalid literal"),
    ],
)
def test_history_file_errors_name_the_line(tmp_path: Path, content: str, reason: str) -> None:
    path = tmp_path / "bars.csv"
    path.write_text(content)
    with pytest.raises(HistoryFormatError, match=reason):
        read_history_file(path)


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 9))
        self.now += seconds


BARS = [bar(1, 0, 100.0), bar(2, 0, 50.0), bar(1, 1, 101.0), bar(1, 3, 102.0)]


@pytest.mark.parametrize(("speed", "sleeps"), [(1, [60.0, 120.0]), (10, [6.0, 12.0]), ("max", [])])
def test_history_ticks_pacing(speed: float | str, sleeps: list[float]) -> None:
    fake = FakeTime()
    ticks = list(history_ticks(BARS, speed=speed, sleep=fake.sleep, clock=fake.clock))  # type: ignore[arg-type]
    assert [(t.instrument_token, t.last_price) for t in ticks] == [
        (1, 100.0),
        (2, 50.0),
        (1, 101.0),
        (1, 102.0),
    ]
    assert ticks[0].ohlc == Ohlc(open=100.0, high=101.0, low=99.0, close=100.0)
    assert ticks[0].timestamp == T0 and ticks[0].volume == 10
    assert fake.sleeps == sleeps


def test_history_ticks_do_not_drift_behind_a_slow_consumer() -> None:
    fake = FakeTime()
    stream = history_ticks(BARS, speed=1, sleep=fake.sleep, clock=fake.clock)
    next(stream)
    next(stream)
    fake.now += 50  # the consumer took 50 s on the first ticks
    next(stream)
    assert fake.sleeps == [10.0]


def test_history_ticks_reject_disorder_and_bad_speed() -> None:
    with pytest.raises(HistoryFormatError, match="out of time order"):
        list(history_ticks([bar(1, 5, 10.0), bar(1, 0, 10.0)]))
    with pytest.raises(HistoryFormatError, match="speed must be a positive number or 'max'"):
        list(history_ticks(BARS, speed=0))
