"""``alpha-panda pnl close-day``: the latest snapshots in Redis become one ``daily_pnl`` row per account."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import orjson
import psycopg
import pytest
import redis

from connectors.daily_pnl import DailyPnlError, daily_pnl, rows_for_day

DAY = date(2024, 1, 2)


def snapshot(strategy_id: str, total_pnl: float, timestamp: str = "2024-01-02T09:59:00+00:00") -> dict:
    return {
        "strategy_id": strategy_id,
        "broker": "paper",
        "cash": 989834.769925,
        "positions": {
            "256265": {
                "quantity": 100,
                "average_price": 101.55075,
                "last_price": 102.0,
                "realized_pnl": 0.0,
                "unrealized_pnl": 44.925,
            }
        },
        "realized_pnl": 0.0,
        "unrealized_pnl": 44.925,
        "total_pnl": total_pnl,
        "fees_paid": 10.155075,
        "total_value": 1000034.769925,
        "timestamp": timestamp,
    }


def test_rows_name_the_account_and_field_they_reject() -> None:
    good = snapshot("s1", 34.77)
    (row,) = rows_for_day(DAY, {"paper": {"s1": good}})
    assert (row.trading_date, row.broker, row.strategy_id) == (DAY, "paper", "s1")
    assert row.money == (989834.769925, 0.0, 44.925, 34.77, 10.155075, 1000034.769925)
    assert row.snapshot_ts == datetime(2024, 1, 2, 9, 59, tzinfo=UTC)
    cases = [
        ({**good, "cash": "lots"}, "daily P&L of paper:s1: cash must be a finite number, got 'lots'"),
        (
            {**good, "total_pnl": float("nan")},
            "daily P&L of paper:s1: total_pnl must be a finite number, got nan",
        ),
        ({**good, "positions": []}, "daily P&L of paper:s1: positions must be an object, got []"),
        (
            {**good, "timestamp": "2024-01-02T09:59:00"},
            "daily P&L of paper:s1: timestamp '2024-01-02T09:59:00' has no UTC offset",
        ),
    ]
    for data, message in cases:
        with pytest.raises(DailyPnlError) as caught:
            rows_for_day(DAY, {"paper": {"s1": data}})
        assert str(caught.value) == message


@pytest.fixture
def database(postgres_url: str) -> Iterator[str]:
    name = f"pnl_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(urlsplit(postgres_url)._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def own_redis_db(redis_url: str) -> Iterator[str]:
    """A Redis database number no other test writes portfolios to, emptied afterwards."""
    url = urlunsplit(urlsplit(redis_url)._replace(path="/11"))
    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        yield url
    finally:
        client.flushdb()


def _close_day(redis_url: str, postgres_url: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "alpha_panda.cli", "pnl", "close-day", "--date", DAY.isoformat()],
        env={
            **os.environ,
            "REDIS_URL": redis_url,
            "POSTGRES_URL": postgres_url,
            "ACTIVE_BROKERS": "paper,zerodha",
            "DATA_DIR": str(tmp_path / "no-stack"),
        },
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


@pytest.mark.integration
def test_close_day_records_each_account_once_and_rerun_replaces(
    own_redis_db: str, database: str, tmp_path: Path
) -> None:
    client = redis.Redis.from_url(own_redis_db)
    client.set("paper:portfolio:s1", orjson.dumps(snapshot("s1", 34.77)))
    client.set("paper:portfolio:s2", orjson.dumps(snapshot("s2", -5.0, "2024-01-01T09:00:00+00:00")))
    client.set("zerodha:portfolio:s1", orjson.dumps({**snapshot("s1", 1.5), "broker": "zerodha"}))

    done = _close_day(own_redis_db, database, tmp_path)
    assert done.returncode == 0, done.stderr
    assert (
        "3 accounts recorded for 2024-01-02 in daily_pnl; 1 from a snapshot of an earlier day" in done.stdout
    )
    rows = daily_pnl(database, DAY)
    assert [(r["broker"], r["strategy_id"], r["total_pnl"]) for r in rows] == [
        ("paper", "s1", 34.77),
        ("paper", "s2", -5.0),
        ("zerodha", "s1", 1.5),
    ]
    assert rows[0]["positions"]["256265"]["quantity"] == 100

    # Later the same day: the latest snapshot replaces the row, never a second row.
    client.set("paper:portfolio:s1", orjson.dumps(snapshot("s1", 50.0, "2024-01-02T10:00:00+00:00")))
    assert _close_day(own_redis_db, database, tmp_path).returncode == 0
    rows = daily_pnl(database, DAY)
    assert [(r["broker"], r["strategy_id"], r["total_pnl"]) for r in rows] == [
        ("paper", "s1", 50.0),
        ("paper", "s2", -5.0),
        ("zerodha", "s1", 1.5),
    ]


def test_close_day_names_what_is_missing(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "POSTGRES_URL")}
    done = subprocess.run(
        [sys.executable, "-m", "alpha_panda.cli", "pnl", "close-day"],
        env={**env, "DATA_DIR": str(tmp_path / "no-stack")},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 2
    assert re.sub(r"\s+", " ", done.stderr).startswith(
        "error: no servers: set REDIS_URL and POSTGRES_URL or run `alpha-panda up`"
    )
