"""Equity history in PostgreSQL: every P&L snapshot, for charts that survive restarts.

Table ``equity_history`` (migration ``0200``): one row per ``pnl_snapshot``
event, unique on ``(broker, event_id)``. The live flows write it with
:class:`EquityHistorySink` next to the Redis portfolio sink; the dashboard
reads it with :func:`read_equity`.
"""

from __future__ import annotations

from typing import Any, Final

import psycopg
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from connectors.dlq import Resilience, SinkGuard
from connectors.errors import PostgresConnectorError, SinkInputError, redact_url
from connectors.postgres.connection import POSTGRES_RULES, ReopeningConnection
from schemas.envelope import Outbound, PnlEnvelope, Published, messages_of

_SINK_STEP: Final = "equity_history_sink"

_INSERT: Final = (
    "INSERT INTO equity_history (broker, strategy_id, event_id, snapshot_ts, cash, realized_pnl,"
    " unrealized_pnl, total_pnl, fees_paid, total_value)"
    " SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::timestamptz[], %s::float8[],"
    " %s::float8[], %s::float8[], %s::float8[], %s::float8[], %s::float8[])"
    " ON CONFLICT (broker, event_id) DO NOTHING"
)


def equity_rows(items: list[Outbound]) -> list[tuple[Any, ...]]:
    """Turn P&L snapshot messages into ``equity_history`` rows, one per distinct event.

    In: :class:`Outbound` items with a :class:`PnlEnvelope`. Out: tuples in
    the column order of the insert; a snapshot repeated in the batch (same
    broker and envelope id) appears once.

    Raises:
        SinkInputError: an item is not a P&L snapshot.
    """
    rows: dict[tuple[str, str], tuple[Any, ...]] = {}
    for item in items:
        if not isinstance(item, Outbound) or not isinstance(item.envelope, PnlEnvelope):
            raise SinkInputError(_SINK_STEP, "Outbound with a PnlEnvelope", item)
        snap = item.envelope.data
        rows[(snap.broker, item.envelope.id)] = (
            snap.broker, snap.strategy_id, item.envelope.id, snap.timestamp, snap.cash,
            snap.realized_pnl, snap.unrealized_pnl, snap.total_pnl, snap.fees_paid, snap.total_value,
        )  # fmt: skip
    return list(rows.values())


def write_equity(conn: psycopg.Connection[Any], rows: list[tuple[Any, ...]]) -> None:
    """Insert ``rows`` with one statement, inside the caller's transaction (idempotent)."""
    if rows:
        conn.execute(_INSERT, [list(column) for column in zip(*rows, strict=True)])


class _EquityPartition(StatelessSinkPartition[Published]):
    """One connection, reopened after a failure; the guard retries and dead-letters."""

    def __init__(self, url: str, guard: SinkGuard | None) -> None:
        self._url = url
        self._guard = guard
        self._conn = ReopeningConnection(url)

    def _write(self, rows: list[tuple[Any, ...]]) -> None:
        self._conn.run(lambda conn: write_equity(conn, rows))

    def write_batch(self, items: list[Published]) -> None:
        """Write the batch's snapshots in one transaction (one statement)."""
        messages = messages_of(items)
        rows = equity_rows(messages)
        if not rows:
            return
        if self._guard is not None:
            self._guard.write(messages, lambda: self._write(rows))
            return
        try:
            self._write(rows)
        except psycopg.Error as err:
            msg = f"{_SINK_STEP}: writing {len(rows)} snapshot(s) to {redact_url(self._url)} failed: {err}"
            raise PostgresConnectorError(msg) from err

    def close(self) -> None:
        if self._guard is not None:
            self._guard.close()
        self._conn.close()


class EquityHistorySink(DynamicSink[Published]):
    """A bytewax sink appending P&L snapshots to ``equity_history``.

    In: ``Outbound`` items with a :class:`PnlEnvelope`, or lists of them. Out: per batch one
    transaction with one ``INSERT ... SELECT FROM unnest(...) ON CONFLICT DO
    NOTHING``, so a redelivered snapshot adds no row. With ``resilience``,
    failures retry per its policy and then go to ``<broker>.pnl.snapshots.dlq``.

    Raises:
        PostgresConnectorError: the write failed (without ``resilience``).
    """

    def __init__(self, url: str, *, resilience: Resilience | None = None) -> None:
        self._url = url
        self._resilience = resilience

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _EquityPartition:
        """Build this worker's writer (connects on the first batch)."""
        guard = (
            self._resilience.guard(_SINK_STEP, POSTGRES_RULES, worker_index)
            if self._resilience is not None
            else None
        )
        return _EquityPartition(self._url, guard)
