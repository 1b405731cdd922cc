"""Read-side queries over the Postgres ledger and equity history, for the dashboard.

One small connection pool per reader; every method is one short query. Rows
are plain dicts (timestamps aware ``datetime``, money ``float``).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Final

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from connectors.errors import PostgresConnectorError
from connectors.postgres import CONNECT_TIMEOUT_S

_ORDER_COLUMNS: Final = (
    "broker, order_id, strategy_id, instrument_token, side, quantity, price, status,"
    " execution_mode, error_message, order_ts"
)
_FILL_COLUMNS: Final = (
    "broker, order_id, strategy_id, instrument_token, side, quantity, fill_price, fees,"
    " execution_mode, filled_at"
)


class LedgerReader:
    """Queries for the read API: recent orders and fills, per-account counts, equity curves.

    ``url`` is a ``postgresql://`` URL (never logged). Connections open in the
    background; a query waits at most ``CONNECT_TIMEOUT_S`` for one.
    """

    def __init__(self, url: str, *, max_size: int = 4) -> None:
        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=max_size,
            timeout=CONNECT_TIMEOUT_S,
            check=ConnectionPool.check_connection,
            kwargs={"connect_timeout": CONNECT_TIMEOUT_S, "row_factory": dict_row},
            name="ledger-reader",
            open=True,
        )

    def _rows(self, step: str, query: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        try:
            with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
                cur.execute(query, params)
                return cur.fetchall()
        except psycopg.Error as err:  # PoolTimeout (no connection in time) is one too
            msg = f"{step}: {type(err).__name__}: {err}"
            raise PostgresConnectorError(msg) from err

    def recent_orders(self, limit: int = 50) -> list[dict[str, Any]]:
        """The latest ``limit`` orders of every broker, newest first (by order time)."""
        return self._rows(
            "recent_orders",
            f"SELECT {_ORDER_COLUMNS} FROM orders"  # noqa: S608 - constant columns
            " ORDER BY order_ts DESC, recorded_at DESC, order_id LIMIT %(limit)s",
            {"limit": limit},
        )

    def recent_fills(self, limit: int = 50) -> list[dict[str, Any]]:
        """The latest ``limit`` fills of every broker, newest first (by fill time)."""
        return self._rows(
            "recent_fills",
            f"SELECT {_FILL_COLUMNS} FROM fills"  # noqa: S608 - constant columns
            " ORDER BY filled_at DESC, recorded_at DESC, order_id LIMIT %(limit)s",
            {"limit": limit},
        )

    def account_counts(self) -> dict[str, dict[str, dict[str, int]]]:
        """``{broker: {strategy_id: {"orders": n, "fills": n, "failed": n}}}`` from the ledger."""
        rows = self._rows(
            "account_counts",
            "SELECT o.broker, o.strategy_id, count(*) AS orders,"
            " count(*) FILTER (WHERE o.status = 'FAILED') AS failed,"
            " (SELECT count(*) FROM fills f WHERE f.broker = o.broker"
            " AND f.strategy_id = o.strategy_id) AS fills"
            " FROM orders o GROUP BY o.broker, o.strategy_id",
            {},
        )
        counts: dict[str, dict[str, dict[str, int]]] = defaultdict(dict)
        for row in rows:
            counts[row["broker"]][row["strategy_id"]] = {
                "orders": int(row["orders"]),
                "fills": int(row["fills"]),
                "failed": int(row["failed"]),
            }
        return dict(counts)

    def equity(self, broker: str, strategy_id: str, limit: int = 2000) -> list[dict[str, Any]]:
        """The account's latest ``limit`` equity points in event-time order.

        Each: ``timestamp``, ``total_value``, ``total_pnl``, ``cash``.
        """
        return self._rows(
            "equity",
            "SELECT snapshot_ts AS timestamp, total_value, total_pnl, cash FROM ("
            " SELECT snapshot_ts, total_value, total_pnl, cash, event_id FROM equity_history"
            " WHERE broker = %(broker)s AND strategy_id = %(strategy)s"
            " ORDER BY snapshot_ts DESC, event_id DESC LIMIT %(limit)s) AS latest"
            " ORDER BY snapshot_ts, event_id",
            {"broker": broker, "strategy": strategy_id, "limit": limit},
        )

    def equity_curves(self, limit: int = 500) -> dict[str, dict[str, list[dict[str, Any]]]]:
        """``{broker: {strategy_id: points}}``: each account's latest ``limit`` points, oldest first.

        Points as :meth:`equity`; one query for every account.
        """
        rows = self._rows(
            "equity_curves",
            "SELECT broker, strategy_id, snapshot_ts AS timestamp, total_value, total_pnl, cash FROM ("
            " SELECT *, row_number() OVER (PARTITION BY broker, strategy_id"
            " ORDER BY snapshot_ts DESC, event_id DESC) AS age FROM equity_history) AS ranked"
            " WHERE age <= %(limit)s ORDER BY broker, strategy_id, snapshot_ts, event_id",
            {"limit": limit},
        )
        curves: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(dict)
        for row in rows:
            broker, strategy = row.pop("broker"), row.pop("strategy_id")
            curves[broker].setdefault(strategy, []).append(row)
        return dict(curves)

    def close(self) -> None:
        """Close the pool."""
        self._pool.close()
