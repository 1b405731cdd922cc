"""Postgres for live Zerodha orders: instruments by token, and our order intents.

An *intent* is written before an order goes to Kite, keyed by its tag, so
order updates can map a Kite order back to our order id, strategy and
instrument, and the per-day order cap counts what was really attempted.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Final

import psycopg
from psycopg.rows import dict_row

from connectors.errors import PostgresConnectorError, redact_url
from connectors.marketdata.instruments import Instrument

_INSTRUMENT_COLUMNS: Final = (
    "instrument_token, exchange_token, tradingsymbol, name, last_price, expiry,"
    " strike, tick_size, lot_size, instrument_type, segment, exchange"
)
_INTENT_COLUMNS: Final = (
    "tag, order_id, kite_order_id, strategy_id, instrument_token, exchange, tradingsymbol,"
    " side, quantity, product, order_type, price, trading_day"
)


@dataclass(frozen=True, slots=True)
class OrderIntent:
    """A live order as we meant it (shares; price in rupees for LIMIT, else None)."""

    tag: str
    order_id: str
    strategy_id: str
    instrument_token: int
    exchange: str
    tradingsymbol: str
    side: str
    quantity: int
    product: str
    order_type: str
    price: float | None
    trading_day: date
    kite_order_id: str | None = None


class ZerodhaStore:
    """One Postgres connection (re-opened after a failure), safe to share between threads."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._conn: psycopg.Connection[dict[str, Any]] | None = None
        self._lock = threading.Lock()

    def _run(self, step: str, query: str, params: Any = None, *, fetch: bool = True) -> list[dict[str, Any]]:
        with self._lock:
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = psycopg.connect(
                        self._url, connect_timeout=5, autocommit=True, row_factory=dict_row
                    )
                cursor = self._conn.execute(query, params)
                return cursor.fetchall() if fetch and cursor.description else []
            except psycopg.Error as err:
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None
                msg = f"{step}: Postgres at {redact_url(self._url)}: {type(err).__name__}: {err}"
                raise PostgresConnectorError(msg) from err

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def instrument(self, token: int) -> Instrument | None:
        """The ``instruments`` row of ``token``, or None."""
        rows = self._run(
            "zerodha instrument",
            f"SELECT {_INSTRUMENT_COLUMNS} FROM instruments WHERE instrument_token = %s",  # noqa: S608
            (token,),
        )
        return Instrument(**rows[0]) if rows else None

    def record_intent(self, intent: OrderIntent) -> bool:
        """Store ``intent`` unless its tag is stored already; True when it is new."""
        rows = self._run(
            "zerodha record_intent",
            f"INSERT INTO zerodha_orders ({_INTENT_COLUMNS}) VALUES"  # noqa: S608 - constant columns
            " (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (tag) DO NOTHING RETURNING tag",
            (
                intent.tag,
                intent.order_id,
                intent.kite_order_id,
                intent.strategy_id,
                intent.instrument_token,
                intent.exchange,
                intent.tradingsymbol,
                intent.side,
                intent.quantity,
                intent.product,
                intent.order_type,
                intent.price,
                intent.trading_day,
            ),
        )
        return bool(rows)

    def set_kite_order_id(self, tag: str, kite_order_id: str) -> None:
        """Remember which Kite order carries ``tag``."""
        self._run(
            "zerodha set_kite_order_id",
            "UPDATE zerodha_orders SET kite_order_id = %s WHERE tag = %s",
            (kite_order_id, tag),
            fetch=False,
        )

    def intents(self, tags: list[str]) -> dict[str, OrderIntent]:
        """The stored intents of ``tags``, by tag."""
        if not tags:
            return {}
        rows = self._run(
            "zerodha intents",
            f"SELECT {_INTENT_COLUMNS} FROM zerodha_orders WHERE tag = ANY(%s)",  # noqa: S608
            (tags,),
        )
        return {row["tag"]: OrderIntent(**row) for row in rows}

    def intents_since(self, since: datetime) -> list[OrderIntent]:
        """Every intent placed at or after ``since``, oldest first."""
        rows = self._run(
            "zerodha intents_since",
            f"SELECT {_INTENT_COLUMNS} FROM zerodha_orders WHERE placed_at >= %s ORDER BY placed_at",  # noqa: S608
            (since,),
        )
        return [OrderIntent(**row) for row in rows]

    def orders_on(self, trading_day: date) -> int:
        """How many live orders were attempted on ``trading_day`` (IST)."""
        rows = self._run(
            "zerodha orders_on",
            "SELECT count(*) AS n FROM zerodha_orders WHERE trading_day = %s",
            (trading_day,),
        )
        return int(rows[0]["n"])
