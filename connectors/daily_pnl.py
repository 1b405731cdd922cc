"""The day's closing P&L per account: latest ``pnl_snapshot`` data in, Postgres ``daily_pnl`` rows out.

``rows_for_day`` turns snapshots (as Redis holds them,
``{broker: {strategy_id: data}}``) into rows, checking each field;
``upsert_daily_pnl`` writes them in one statement, replacing the day's row of
an account, so recording a day twice leaves one row per account.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import orjson
import psycopg
from psycopg.rows import dict_row

from connectors.errors import PostgresConnectorError, redact_url

_MONEY = ("cash", "realized_pnl", "unrealized_pnl", "total_pnl", "fees_paid", "total_value")


class DailyPnlError(PostgresConnectorError):
    """A snapshot cannot be recorded as the day's P&L (names the account and field)."""


@dataclass(frozen=True)
class DailyPnl:
    """One account's closing figures for one trading date (money in the account currency)."""

    trading_date: date
    broker: str
    strategy_id: str
    money: tuple[float, ...]  # in the order of _MONEY
    positions: dict[str, Any]
    snapshot_ts: datetime


def _row(trading_date: date, broker: str, strategy_id: str, data: Mapping[str, Any]) -> DailyPnl:
    where = f"daily P&L of {broker}:{strategy_id}"
    money = []
    for field in _MONEY:
        value = data.get(field)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            msg = f"{where}: {field} must be a finite number, got {value!r}"
            raise DailyPnlError(msg)
        money.append(float(value))
    positions = data.get("positions")
    if not isinstance(positions, dict):
        msg = f"{where}: positions must be an object, got {positions!r}"
        raise DailyPnlError(msg)
    try:
        stamp = datetime.fromisoformat(str(data.get("timestamp")))
    except ValueError as err:
        msg = f"{where}: timestamp {data.get('timestamp')!r} is not ISO-8601"
        raise DailyPnlError(msg) from err
    if stamp.tzinfo is None:
        msg = f"{where}: timestamp {data.get('timestamp')!r} has no UTC offset"
        raise DailyPnlError(msg)
    return DailyPnl(trading_date, broker, strategy_id, tuple(money), positions, stamp)


def rows_for_day(
    trading_date: date, snapshots: Mapping[str, Mapping[str, Mapping[str, Any]]]
) -> list[DailyPnl]:
    """One row per account in ``snapshots`` (``{broker: {strategy_id: snapshot data}}``), sorted."""
    return [
        _row(trading_date, broker, strategy_id, snapshots[broker][strategy_id])
        for broker in sorted(snapshots)
        for strategy_id in sorted(snapshots[broker])
    ]


_UPSERT = """
INSERT INTO daily_pnl (trading_date, broker, strategy_id, cash, realized_pnl, unrealized_pnl,
                       total_pnl, fees_paid, total_value, positions, snapshot_ts)
SELECT * FROM unnest(%s::date[], %s::text[], %s::text[], %s::float8[], %s::float8[], %s::float8[],
                     %s::float8[], %s::float8[], %s::float8[], %s::jsonb[], %s::timestamptz[])
ON CONFLICT (trading_date, broker, strategy_id) DO UPDATE SET
    cash = EXCLUDED.cash, realized_pnl = EXCLUDED.realized_pnl, unrealized_pnl = EXCLUDED.unrealized_pnl,
    total_pnl = EXCLUDED.total_pnl, fees_paid = EXCLUDED.fees_paid, total_value = EXCLUDED.total_value,
    positions = EXCLUDED.positions, snapshot_ts = EXCLUDED.snapshot_ts, recorded_at = now()
"""


def upsert_daily_pnl(url: str, rows: Sequence[DailyPnl]) -> int:
    """Write ``rows`` in one statement (replacing the same day's row of an account); return how many.

    Raises:
        PostgresConnectorError: Postgres is unreachable or refused the batch.
    """
    if not rows:
        return 0
    columns: list[list[Any]] = [
        [r.trading_date for r in rows],
        [r.broker for r in rows],
        [r.strategy_id for r in rows],
        *([r.money[i] for r in rows] for i in range(len(_MONEY))),
        [orjson.dumps(r.positions).decode() for r in rows],
        [r.snapshot_ts for r in rows],
    ]
    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            conn.execute(_UPSERT, columns)
    except psycopg.Error as err:
        msg = f"upsert_daily_pnl: writing {len(rows)} rows to {redact_url(url)} failed: {err}"
        raise PostgresConnectorError(msg) from err
    return len(rows)


def daily_pnl(url: str, trading_date: date) -> list[dict[str, Any]]:
    """The ``daily_pnl`` rows of ``trading_date``, by broker and strategy.

    Raises:
        PostgresConnectorError: Postgres is unreachable.
    """
    try:
        with psycopg.connect(url, connect_timeout=5, row_factory=dict_row) as conn:
            return conn.execute(
                "SELECT * FROM daily_pnl WHERE trading_date = %s ORDER BY broker, strategy_id",
                (trading_date,),
            ).fetchall()
    except psycopg.Error as err:
        msg = f"daily_pnl: reading {redact_url(url)} failed: {err}"
        raise PostgresConnectorError(msg) from err
