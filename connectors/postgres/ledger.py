"""The order/fill ledger: one batch -> one statement per table, the Bytewax sink, the readers.

:class:`LedgerSink` writes order events; replaying a batch adds no row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import orjson
import psycopg
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from psycopg_pool import ConnectionPool

from connectors.dlq import Resilience, SinkGuard
from connectors.errors import SinkInputError
from connectors.postgres.connection import (
    DEFAULT_RETRY_S,
    POSTGRES_RULES,
    ReopeningConnection,
    connect,
    connection_pool,
    with_retry,
)
from schemas.envelope import (
    FailedEnvelope,
    FilledEnvelope,
    Outbound,
    Published,
    SubmittedEnvelope,
    messages_of,
)

_SINK_STEP: Final = "ledger_sink"

OrderEnvelope = SubmittedEnvelope | FilledEnvelope | FailedEnvelope


# One JSON array of row arrays per table (orjson, in C) rather than a typed array per column,
# read as jsonb (parsed once; json would re-scan its text for every field: 1.5x the server time),
# whose per-element dumping in Python cost more than the round trip to the server.
_ORDERS_INSERT: Final = (
    "INSERT INTO orders (broker, order_id, strategy_id, instrument_token, side, quantity,"
    " price, status, is_terminal, execution_mode, error_message, event_id, order_ts)"
    " SELECT r->>0, r->>1, r->>2, (r->>3)::bigint, r->>4, (r->>5)::bigint, (r->>6)::float8,"
    " r->>7, (r->>8)::bool, r->>9, r->>10, r->>11, (r->>12)::timestamptz"
    " FROM jsonb_array_elements(%s::jsonb) AS r"
    " ON CONFLICT (broker, order_id) DO UPDATE SET"
    " status = EXCLUDED.status, is_terminal = true,"
    " price = coalesce(EXCLUDED.price, orders.price), error_message = EXCLUDED.error_message,"
    " event_id = EXCLUDED.event_id, updated_at = now()"
    " WHERE EXCLUDED.is_terminal AND NOT orders.is_terminal"
)
_FILLS_INSERT: Final = (
    "INSERT INTO fills (broker, order_id, strategy_id, instrument_token, side, quantity,"
    " fill_price, fees, execution_mode, event_id, filled_at)"
    " SELECT r->>0, r->>1, r->>2, (r->>3)::bigint, r->>4, (r->>5)::bigint, (r->>6)::float8,"
    " (r->>7)::float8, r->>8, r->>9, (r->>10)::timestamptz"
    " FROM jsonb_array_elements(%s::jsonb) AS r"
    " ON CONFLICT (broker, order_id) DO NOTHING"
)


def _order_row(envelope: OrderEnvelope) -> tuple[Any, ...]:
    data = envelope.data
    if isinstance(envelope, SubmittedEnvelope):
        price, status, terminal, error = envelope.data.price, envelope.data.status, False, None
    elif isinstance(envelope, FilledEnvelope):
        price, status, terminal, error = envelope.data.fill_price, "FILLED", True, None
    else:
        price, status, terminal, error = None, "FAILED", True, envelope.data.error_message
    return (
        data.broker, data.order_id, data.strategy_id, data.instrument_token, data.side,
        data.quantity, price, status, terminal, data.execution_mode, error, envelope.id,
        data.timestamp,
    )  # fmt: skip


def _fill_row(envelope: FilledEnvelope) -> tuple[Any, ...]:
    data = envelope.data
    return (
        data.broker, data.order_id, data.strategy_id, data.instrument_token, data.side,
        data.quantity, data.fill_price, data.fees, data.execution_mode, envelope.id,
        data.timestamp,
    )  # fmt: skip


@dataclass(frozen=True)
class LedgerBatch:
    """The rows one sink batch writes: ``orders`` one per (broker, order_id), ``fills``."""

    orders: list[tuple[Any, ...]]
    fills: list[tuple[Any, ...]]


def ledger_batch(items: list[Outbound]) -> LedgerBatch:
    """Turn order events into ledger rows, one order row per (broker, order_id).

    In: :class:`Outbound` items with a submitted, filled or failed envelope,
    in stream order. A terminal event (filled, failed) wins over a submitted
    one for the same order; otherwise the first event wins.

    Raises:
        SinkInputError: an item is not an order event.
    """
    orders: dict[tuple[str, str], tuple[Any, ...]] = {}
    fills: list[tuple[Any, ...]] = []
    for item in items:
        envelope = item.envelope if isinstance(item, Outbound) else None
        if not isinstance(envelope, SubmittedEnvelope | FilledEnvelope | FailedEnvelope):
            raise SinkInputError(_SINK_STEP, "Outbound with an order envelope", item)
        row = _order_row(envelope)
        key = (row[0], row[1])
        held = orders.get(key)
        if held is None or (row[8] and not held[8]):
            orders[key] = row
        if isinstance(envelope, FilledEnvelope):
            fills.append(_fill_row(envelope))
    return LedgerBatch(list(orders.values()), fills)


def _json_rows(rows: list[tuple[Any, ...]]) -> str:
    """The rows as one JSON array of arrays; times in RFC 3339 with their offset, floats exact."""
    return orjson.dumps(rows).decode()


def write_ledger(conn: psycopg.Connection[Any], batch: LedgerBatch) -> None:
    """Write ``batch`` with one statement per table, inside the caller's transaction."""
    if batch.orders:
        conn.execute(_ORDERS_INSERT, (_json_rows(batch.orders),))
    if batch.fills:
        conn.execute(_FILLS_INSERT, (_json_rows(batch.fills),))


class _LedgerPartition(StatelessSinkPartition[Published]):
    def __init__(self, pool: ConnectionPool, retry_s: float) -> None:
        self._pool = pool
        self._retry_s = retry_s

    def write_batch(self, items: list[Published]) -> None:
        """Write one batch in one transaction: one statement for orders, one for fills."""
        batch = ledger_batch(messages_of(items))
        if batch.orders:
            with_retry(self._pool, "ledger_sink", self._retry_s, lambda c: write_ledger(c, batch))

    def close(self) -> None:
        self._pool.close()


class _GuardedLedgerPartition(StatelessSinkPartition[Published]):
    """One connection, reopened on failure; retries and dead letters come from the guard."""

    def __init__(self, url: str, guard: SinkGuard) -> None:
        self._conn = ReopeningConnection(url)
        self._guard = guard

    def write_batch(self, items: list[Published]) -> None:
        """Write one batch in one transaction, or dead-letter it when retries run out."""
        messages = messages_of(items)
        batch = ledger_batch(messages)
        if batch.orders:
            self._guard.write(messages, lambda: self._conn.run(lambda conn: write_ledger(conn, batch)))

    def close(self) -> None:
        self._guard.close()
        self._conn.close()


class LedgerSink(DynamicSink[Published]):
    """A bytewax sink recording order events in the Postgres ledger.

    In: ``Outbound`` items with an ``order_submitted``, ``order_filled`` or
    ``order_failed`` envelope, or lists of them. Out: per batch one transaction with one
    ``INSERT ... SELECT FROM jsonb_array_elements(...)`` into ``orders`` and one into
    ``fills``. Idempotent: replaying a batch adds no row (unique on
    ``(broker, order_id)``); a terminal status is never moved back.
    Without ``resilience``, a batch is retried for ``retry_s`` s while
    Postgres is unreachable; with it, per its policy, and when that gives up
    the batch's order events go to ``<broker>.orders.<stage>.dlq``.

    Raises:
        PostgresConnectorError: Postgres stayed unreachable, or refused the
            rows (without ``resilience``).
    """

    def __init__(
        self, url: str, *, retry_s: float = DEFAULT_RETRY_S, resilience: Resilience | None = None
    ) -> None:
        self._url = url
        self._retry_s = retry_s
        self._resilience = resilience

    def build(
        self, step_id: str, worker_index: int, worker_count: int
    ) -> _LedgerPartition | _GuardedLedgerPartition:
        """Build this worker's connection pool (connects in the background), or guarded connection."""
        if self._resilience is not None:
            guard = self._resilience.guard(_SINK_STEP, POSTGRES_RULES, worker_index)
            return _GuardedLedgerPartition(self._url, guard)
        return _LedgerPartition(connection_pool(self._url, f"{step_id}-{worker_index}"), self._retry_s)


def _read(url: str, step: str, query: str, broker: str | None) -> list[dict[str, Any]]:
    with connect(url, step) as conn:
        return conn.execute(query, {"broker": broker}).fetchall()


def ledger_fills(url: str, broker: str | None = None) -> list[dict[str, Any]]:
    """Return ``fills`` rows (all columns; prices and fees float) for ``broker``, or all."""
    return _read(
        url,
        "ledger_fills",
        "SELECT * FROM fills WHERE %(broker)s::text IS NULL OR broker = %(broker)s"
        " ORDER BY broker, filled_at, order_id",
        broker,
    )


def ledger_counts(url: str, broker: str | None = None) -> dict[str, int]:
    """Return ``{"orders": n, "fills": n, "failed": n}`` for ``broker``, or all brokers."""
    rows = _read(
        url,
        "ledger_counts",
        "SELECT (SELECT count(*) FROM orders WHERE %(broker)s::text IS NULL"
        " OR broker = %(broker)s) AS orders,"
        " (SELECT count(*) FROM fills WHERE %(broker)s::text IS NULL"
        " OR broker = %(broker)s) AS fills,"
        " (SELECT count(*) FROM orders WHERE status = 'FAILED' AND (%(broker)s::text IS NULL"
        " OR broker = %(broker)s)) AS failed",
        broker,
    )
    return {key: int(value) for key, value in rows[0].items()}
