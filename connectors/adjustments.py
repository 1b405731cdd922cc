"""Position adjustments in Postgres: positions adopted from a broker's own figures.

``reconcile --broker zerodha --adopt`` records one :class:`Adjustment` per
position it takes from Kite (``position_adjustments``, migration 0400);
``alpha-panda reconcile`` rebuilds each account from its ledger fills and
its adjustments, in time order (:mod:`alpha_panda.reconcile`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import dict_row

from connectors.errors import PostgresConnectorError, describe_error, redact_url


@dataclass(frozen=True)
class Adjustment:
    """From ``adopted_at`` on, the account holds ``quantity`` of the instrument at ``average_price``.

    ``previous_quantity``: what our books held before; ``reason``: why (who adopted what).
    """

    broker: str
    strategy_id: str
    instrument_token: int
    quantity: int
    average_price: Decimal
    previous_quantity: int
    adopted_at: datetime
    reason: str


@contextmanager
def _connect(url: str, step: str) -> Iterator[psycopg.Connection[dict[str, Any]]]:
    try:
        conn = psycopg.connect(url, connect_timeout=10, row_factory=dict_row)
    except psycopg.Error as err:
        msg = f"{step}: cannot connect to {redact_url(url)}: {describe_error(err, url)}"
        raise PostgresConnectorError(msg) from None
    try:
        with conn:
            yield conn
    except psycopg.Error as err:
        msg = f"{step}: {type(err).__name__}: {describe_error(err, url)}"
        raise PostgresConnectorError(msg) from None


def record_adjustments(url: str, adjustments: Sequence[Adjustment]) -> None:
    """Insert ``adjustments`` in one transaction (all or none).

    Raises:
        PostgresConnectorError: Postgres refused or is unreachable (password hidden).
    """
    if not adjustments:
        return
    with _connect(url, "record_adjustments") as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO position_adjustments (broker, strategy_id, instrument_token, quantity,"
            " average_price, previous_quantity, adopted_at, reason)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            [
                (
                    a.broker,
                    a.strategy_id,
                    a.instrument_token,
                    a.quantity,
                    a.average_price,
                    a.previous_quantity,
                    a.adopted_at,
                    a.reason,
                )
                for a in adjustments
            ],
        )


def read_adjustments(url: str, broker: str) -> list[Adjustment]:
    """Every adjustment of ``broker``'s accounts, oldest first.

    Raises:
        PostgresConnectorError: Postgres refused or is unreachable (password hidden).
    """
    with _connect(url, "read_adjustments") as conn:
        rows = conn.execute(
            "SELECT broker, strategy_id, instrument_token, quantity, average_price, previous_quantity,"
            " adopted_at, reason FROM position_adjustments WHERE broker = %s ORDER BY adopted_at, id",
            (broker,),
        ).fetchall()
    return [
        Adjustment(
            str(r["broker"]),
            str(r["strategy_id"]),
            int(r["instrument_token"]),
            int(r["quantity"]),
            Decimal(r["average_price"]),
            int(r["previous_quantity"]),
            r["adopted_at"],
            str(r["reason"]),
        )
        for r in rows
    ]
