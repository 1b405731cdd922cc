"""Test-only reader of the ledger's ``orders`` table (production reads go through connectors)."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row


def ledger_orders(url: str, broker: str | None = None) -> list[dict[str, Any]]:
    """Return ``orders`` rows (all columns) for ``broker``, or all brokers, by time."""
    with psycopg.connect(url, connect_timeout=5, row_factory=dict_row) as conn:
        return conn.execute(
            "SELECT * FROM orders WHERE %(broker)s::text IS NULL OR broker = %(broker)s"
            " ORDER BY broker, order_ts, order_id",
            {"broker": broker},
        ).fetchall()
