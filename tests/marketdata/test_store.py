"""Postgres-backed tests: POSTGRES_URL, or a throwaway pgserver for the session (conftest)."""

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest

from connectors.marketdata.backfill import backfill, history_ticks
from connectors.marketdata.bars import Bar
from connectors.marketdata.instruments import Instrument
from connectors.marketdata.store import (
    MIGRATION,
    load_instruments,
    read_bars,
    upsert_bars,
    upsert_instruments,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:XDG_RUNTIME_DIR is not set"),
]
T0 = datetime(2024, 1, 2, 14, 30, tzinfo=UTC)


@pytest.fixture
def conn(postgres_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(postgres_url) as connection:
        connection.execute(MIGRATION.read_text())
        connection.execute("TRUNCATE market_data, instruments")
        connection.commit()
        yield connection


def bar(token: int, minutes: int, close: float, volume: int = 10) -> Bar:
    return Bar(
        token,
        T0 + timedelta(minutes=minutes),
        close,
        close + 1,
        close - 1,
        close,
        volume,
        symbol=f"S{token}",
        source="test",
    )


def test_migration_is_rerunnable(conn: psycopg.Connection) -> None:
    conn.execute(MIGRATION.read_text())
    conn.commit()


def test_upserting_twice_leaves_one_row_per_bar_with_latest_values(conn: psycopg.Connection) -> None:
    bars = [bar(1, 0, 100.0), bar(1, 1, 101.0), bar(2, 0, 50.0)]
    assert upsert_bars(conn, bars) == 3
    assert upsert_bars(conn, bars) == 3
    # A corrected bar and an in-batch duplicate: the last one wins.
    assert upsert_bars(conn, [bar(1, 1, 999.0), bar(1, 1, 101.5, volume=77)]) == 1
    count = conn.execute("SELECT count(*) FROM market_data").fetchone()
    assert count == (3,)
    stored = list(read_bars(conn))
    assert [(b.instrument_token, b.timestamp, b.close, b.volume) for b in stored] == [
        (1, T0, 100.0, 10),
        (2, T0, 50.0, 10),
        (1, T0 + timedelta(minutes=1), 101.5, 77),
    ]
    assert stored[0].symbol == "S1" and stored[0].source == "test"
    assert [b.close for b in read_bars(conn, tokens=[1], start=T0 + timedelta(minutes=1))] == [101.5]
    assert upsert_bars(conn, []) == 0


def test_backfill_into_postgres_then_replay_as_ticks(conn: psycopg.Connection) -> None:
    def fetch(symbol: str) -> list[Bar]:
        token = {"A": 1, "B": 2}[symbol]
        return [bar(token, m, 100.0 + token + m) for m in range(3)]

    for _ in range(2):
        report = backfill(["A", "B"], fetch, lambda bars: upsert_bars(conn, bars), concurrency=2)
        assert report.ok and report.loaded == {"A": 3, "B": 3}
    ticks = list(history_ticks(read_bars(conn)))
    assert [(t.instrument_token, t.last_price) for t in ticks] == [
        (1, 101.0),
        (2, 102.0),
        (1, 102.0),
        (2, 103.0),
        (1, 103.0),
        (2, 104.0),
    ]


def test_instruments_upsert(conn: psycopg.Connection) -> None:
    infy = Instrument(408065, 1594, "INFY", "INFOSYS", 1500.25, None, 0.0, 0.05, 1, "EQ", "NSE", "NSE")
    option = Instrument(
        12345602,
        48225,
        "NIFTY24JUN22500CE",
        "NIFTY",
        150.5,
        date(2024, 6, 27),
        22500.0,
        0.05,
        25,
        "CE",
        "NFO-OPT",
        "NFO",
    )
    assert upsert_instruments(conn, [infy, option]) == 2
    moved = Instrument(408065, 1594, "INFY", "INFOSYS", 1510.0, None, 0.0, 0.05, 1, "EQ", "NSE", "NSE")
    assert upsert_instruments(conn, [moved]) == 1
    assert load_instruments(conn) == [moved, option]
