"""Strategy configuration rows in ``strategy_configurations``: seed, load, (de)activate, digest."""

from __future__ import annotations

import hashlib
from typing import Any, Final

import orjson
import psycopg
from psycopg.types.json import Jsonb

from connectors.errors import StrategyRowError
from connectors.postgres.connection import connect

_STRATEGY_COLUMNS: Final = (
    "id, strategy_type, instruments, parameters, is_active, zerodha_trading_enabled, updated_at"
)


def _strategy_params(row: dict[str, Any]) -> dict[str, Any]:
    missing = [key for key in ("id", "strategy_type", "instruments") if key not in row]
    if missing:
        msg = f"seed_strategies: strategy row {row.get('id')!r} lacks {missing}"
        raise StrategyRowError(msg)
    return {
        "id": row["id"],
        "strategy_type": row["strategy_type"],
        "instruments": [int(token) for token in row["instruments"]],
        "parameters": Jsonb(dict(row.get("parameters") or {})),
        "is_active": bool(row.get("is_active", True)),
        "zerodha_trading_enabled": bool(row.get("zerodha_trading_enabled", False)),
    }


def seed_strategies(url: str, rows: list[dict[str, Any]]) -> int:
    """Insert or update strategy configuration rows by ``id``, in one transaction.

    Each row needs ``id``, ``strategy_type``, ``instruments`` [int]; optional
    ``parameters`` {} (default empty), ``is_active`` (default true),
    ``zerodha_trading_enabled`` (default false). Unchanged rows are not
    touched. Returns how many rows were inserted or changed.

    Raises:
        StrategyRowError: a row lacks a required field.
        PostgresConnectorError: the write failed.
    """
    params = [_strategy_params(row) for row in rows]
    if not params:
        return 0
    with connect(url, "seed_strategies") as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO strategy_configurations AS s"
            " (id, strategy_type, instruments, parameters, is_active, zerodha_trading_enabled)"
            " VALUES (%(id)s, %(strategy_type)s, %(instruments)s::bigint[], %(parameters)s,"
            " %(is_active)s, %(zerodha_trading_enabled)s)"
            " ON CONFLICT (id) DO UPDATE SET"
            " strategy_type = EXCLUDED.strategy_type, instruments = EXCLUDED.instruments,"
            " parameters = EXCLUDED.parameters, is_active = EXCLUDED.is_active,"
            " zerodha_trading_enabled = EXCLUDED.zerodha_trading_enabled"
            " WHERE (s.strategy_type, s.instruments, s.parameters, s.is_active,"
            " s.zerodha_trading_enabled) IS DISTINCT FROM (EXCLUDED.strategy_type,"
            " EXCLUDED.instruments, EXCLUDED.parameters, EXCLUDED.is_active,"
            " EXCLUDED.zerodha_trading_enabled)",
            params,
            returning=False,
        )
        return max(cur.rowcount, 0)


def load_strategy_rows(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    """Every configuration row on ``conn``, by id (inactive ones included)."""
    rows: list[dict[str, Any]] = conn.execute(
        f"SELECT {_STRATEGY_COLUMNS} FROM strategy_configurations ORDER BY id"  # noqa: S608 - constant
    ).fetchall()
    for row in rows:
        row["instruments"] = list(row["instruments"])
    return rows


def load_strategies(url: str) -> list[dict[str, Any]]:
    """Return every strategy configuration row, active or not, ordered by ``id``.

    Each row: ``id`` str, ``strategy_type`` str, ``instruments`` [int],
    ``parameters`` dict, ``is_active`` bool, ``zerodha_trading_enabled``
    bool, ``updated_at`` aware datetime -- the shape
    ``operators.strategy.StrategyConfig.from_mapping`` reads.

    Raises:
        PostgresConnectorError: the read failed.
    """
    with connect(url, "load_strategies") as conn:
        return load_strategy_rows(conn)


def set_strategy_active(url: str, strategy_id: str, active: bool) -> bool:
    """Switch one strategy on or off; returns ``False`` if no such ``strategy_id`` exists.

    Raises:
        PostgresConnectorError: the write failed.
    """
    with connect(url, "set_strategy_active") as conn:
        cur = conn.execute(
            "UPDATE strategy_configurations SET is_active = %s WHERE id = %s",
            (active, strategy_id),
        )
        return cur.rowcount > 0


def strategies_digest(rows: list[dict[str, Any]]) -> str:
    """Return a hash of the configuration content of ``rows`` (``updated_at`` ignored)."""
    content = [{k: v for k, v in row.items() if k != "updated_at"} for row in rows]
    return hashlib.sha256(orjson.dumps(content, option=orjson.OPT_SORT_KEYS)).hexdigest()
