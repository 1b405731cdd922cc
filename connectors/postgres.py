"""PostgreSQL: migrations, strategy configuration, and the order/fill ledger.

Every function takes the database URL as a plain ``str`` (callers unwrap
their ``SecretStr``); it is never logged or put in an error message except
through :func:`connectors.errors.redact_url`.

Bytewax glue lives here too: :class:`LedgerSink` writes order events,
:class:`StrategyConfigSource` emits the configuration table whenever it changes.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypeVar

import orjson
import psycopg
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from connectors.dlq import Resilience, SinkGuard
from connectors.errors import (
    MigrationError,
    PostgresConnectorError,
    SinkInputError,
    StrategyRowError,
    describe_error,
    redact_url,
)
from schemas.envelope import FailedEnvelope, FilledEnvelope, Outbound, SubmittedEnvelope

log = logging.getLogger(__name__)

_SINK_STEP: Final = "ledger_sink"

T = TypeVar("T")

_MIGRATIONS_LOCK: Final = 0x616C7068  # pg_advisory_xact_lock key: one migrator at a time
CONNECT_TIMEOUT_S: Final = 5
DEFAULT_RETRY_S: Final = 30.0
"""How long a sink keeps retrying a batch while Postgres is unreachable."""

POSTGRES_RULES: Final = (
    ("InvalidPassword", "authentication"),
    ("InvalidAuthorizationSpecification", "authentication"),
    ("InsufficientPrivilege", "authentication"),
    ("SerializationFailure", "transient"),
    ("DeadlockDetected", "transient"),
    ("LockNotAvailable", "transient"),
    ("QueryCanceled", "transient"),
    ("DataError", "poison"),
    ("IntegrityError", "poison"),
    ("OperationalError", "infrastructure"),
    ("InterfaceError", "infrastructure"),
)
"""How :func:`operators.failures.classify` reads psycopg errors."""


@contextmanager
def _connect(url: str, step: str) -> Iterator[psycopg.Connection[dict[str, Any]]]:
    """Open one connection (dict rows); commit on success, roll back on error."""
    try:
        conn = psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_S, row_factory=dict_row)
    except psycopg.Error as err:
        msg = f"{step}: cannot connect to {redact_url(url)}: {describe_error(err, url)}"
        raise PostgresConnectorError(msg) from err
    try:
        with conn:
            yield conn
    except psycopg.Error as err:
        msg = f"{step}: {type(err).__name__}: {err}"
        raise PostgresConnectorError(msg) from err


def ping(url: str) -> None:
    """Return when Postgres at ``url`` answers ``SELECT 1``.

    :raises PostgresConnectorError: it did not.
    """
    with _connect(url, "ping") as conn:
        conn.execute("SELECT 1")


# --- migrations -------------------------------------------------------------


@dataclass(frozen=True)
class Migration:
    """One SQL file of ``connectors/migrations``; ``version`` is its numeric prefix."""

    version: str
    name: str
    sql: str


def migrations() -> list[Migration]:
    """Return the packaged migrations in version order (``0001_init.sql`` -> ``0001``)."""
    folder = importlib.resources.files("connectors").joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            version, _, rest = entry.name.partition("_")
            found.append(Migration(version, rest.removesuffix(".sql"), entry.read_text("utf-8")))
    return sorted(found, key=lambda m: m.version)


def apply_migrations(url: str) -> list[str]:
    """Apply every migration not yet recorded in ``schema_migrations``; idempotent.

    All pending migrations run in one transaction under an advisory lock, so
    concurrent bootstraps are safe and a failure leaves the schema unchanged.
    Returns the versions applied now (empty when up to date).

    :raises MigrationError: a migration failed (names its file).
    :raises PostgresConnectorError: Postgres is unreachable.
    """
    applied: list[str] = []
    with _connect(url, "apply_migrations") as conn:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATIONS_LOCK,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {row["version"] for row in conn.execute("SELECT version FROM schema_migrations")}
        for migration in migrations():
            if migration.version in done:
                continue
            try:
                with conn.transaction():
                    conn.execute(migration.sql.encode())  # no parameters: one simple-protocol batch
            except psycopg.Error as err:
                msg = f"migration {migration.version}_{migration.name}.sql failed: {err}"
                raise MigrationError(msg) from err
            conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                (migration.version, migration.name),
            )
            applied.append(migration.version)
    if applied:
        log.info("applied migrations %s", applied)
    return applied


# --- strategy configuration ---------------------------------------------------

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

    :raises StrategyRowError: a row lacks a required field.
    :raises PostgresConnectorError: the write failed.
    """
    params = [_strategy_params(row) for row in rows]
    if not params:
        return 0
    with _connect(url, "seed_strategies") as conn, conn.cursor() as cur:
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


def _load_strategies(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
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

    :raises PostgresConnectorError: the read failed.
    """
    with _connect(url, "load_strategies") as conn:
        return _load_strategies(conn)


def set_strategy_active(url: str, strategy_id: str, active: bool) -> bool:
    """Switch one strategy on or off; returns ``False`` if no such ``strategy_id`` exists.

    :raises PostgresConnectorError: the write failed.
    """
    with _connect(url, "set_strategy_active") as conn:
        cur = conn.execute(
            "UPDATE strategy_configurations SET is_active = %s WHERE id = %s",
            (active, strategy_id),
        )
        return cur.rowcount > 0


def strategies_digest(rows: list[dict[str, Any]]) -> str:
    """Return a hash of the configuration content of ``rows`` (``updated_at`` ignored)."""
    content = [{k: v for k, v in row.items() if k != "updated_at"} for row in rows]
    return hashlib.sha256(orjson.dumps(content, option=orjson.OPT_SORT_KEYS)).hexdigest()


# --- ledger -----------------------------------------------------------------

OrderEnvelope = SubmittedEnvelope | FilledEnvelope | FailedEnvelope

_ORDERS_INSERT: Final = (
    "INSERT INTO orders (broker, order_id, strategy_id, instrument_token, side, quantity,"
    " price, status, is_terminal, execution_mode, error_message, event_id, order_ts)"
    " SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::bigint[], %s::text[],"
    " %s::bigint[], %s::float8[], %s::text[], %s::bool[], %s::text[], %s::text[], %s::text[],"
    " %s::timestamptz[])"
    " ON CONFLICT (broker, order_id) DO UPDATE SET"
    " status = EXCLUDED.status, is_terminal = true,"
    " price = coalesce(EXCLUDED.price, orders.price), error_message = EXCLUDED.error_message,"
    " event_id = EXCLUDED.event_id, updated_at = now()"
    " WHERE EXCLUDED.is_terminal AND NOT orders.is_terminal"
)
_FILLS_INSERT: Final = (
    "INSERT INTO fills (broker, order_id, strategy_id, instrument_token, side, quantity,"
    " fill_price, fees, execution_mode, event_id, filled_at)"
    " SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::bigint[], %s::text[],"
    " %s::bigint[], %s::float8[], %s::float8[], %s::text[], %s::text[], %s::timestamptz[])"
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

    :raises SinkInputError: an item is not an order event.
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


def _columns(rows: list[tuple[Any, ...]]) -> list[list[Any]]:
    return [list(column) for column in zip(*rows, strict=True)]


def write_ledger(conn: psycopg.Connection[Any], batch: LedgerBatch) -> None:
    """Write ``batch`` with one statement per table, inside the caller's transaction."""
    if batch.orders:
        conn.execute(_ORDERS_INSERT, _columns(batch.orders))
    if batch.fills:
        conn.execute(_FILLS_INSERT, _columns(batch.fills))


def _with_retry(pool: ConnectionPool, step: str, retry_s: float, work: Callable[[Any], T]) -> T:
    """Run ``work(conn)`` in one transaction, retrying lost connections for ``retry_s``."""
    deadline = time.monotonic() + retry_s
    pause = 0.05
    while True:
        try:
            with pool.connection() as conn:
                return work(conn)
        except psycopg.OperationalError as err:
            if time.monotonic() >= deadline:
                msg = f"{step}: Postgres unreachable for {retry_s}s: {err}"
                raise PostgresConnectorError(msg) from err
            log.warning("%s: Postgres unavailable, retrying: %s", step, err)
            time.sleep(pause)
            pause = min(pause * 2, 1.0)
        except psycopg.Error as err:
            msg = f"{step}: {type(err).__name__}: {err}"
            raise PostgresConnectorError(msg) from err


def _pool(url: str, name: str, max_size: int = 2) -> ConnectionPool:
    return ConnectionPool(
        url,
        min_size=1,
        max_size=max_size,
        timeout=CONNECT_TIMEOUT_S,
        check=ConnectionPool.check_connection,
        kwargs={"connect_timeout": CONNECT_TIMEOUT_S, "row_factory": dict_row},
        name=name,
        open=True,
    )


class _LedgerPartition(StatelessSinkPartition[Outbound]):
    def __init__(self, pool: ConnectionPool, retry_s: float) -> None:
        self._pool = pool
        self._retry_s = retry_s

    def write_batch(self, items: list[Outbound]) -> None:
        """Write one batch in one transaction: one statement for orders, one for fills."""
        batch = ledger_batch(items)
        if batch.orders:
            _with_retry(self._pool, "ledger_sink", self._retry_s, lambda c: write_ledger(c, batch))

    def close(self) -> None:
        self._pool.close()


class _GuardedLedgerPartition(StatelessSinkPartition[Outbound]):
    """One connection, reopened on failure; retries and dead letters come from the guard.

    A plain connection (not a pool) fails at once while Postgres is down, so
    the retry policy, not a pool timeout, decides how long a batch waits.
    """

    def __init__(self, url: str, guard: SinkGuard) -> None:
        self._url = url
        self._guard = guard
        self._conn: psycopg.Connection[Any] | None = None

    def _write(self, batch: LedgerBatch) -> None:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self._url, connect_timeout=CONNECT_TIMEOUT_S)
        try:
            with self._conn.transaction():
                write_ledger(self._conn, batch)
        except psycopg.Error:
            if self._conn.broken or self._conn.closed:
                self._conn = None
            raise

    def write_batch(self, items: list[Outbound]) -> None:
        """Write one batch in one transaction, or dead-letter it when retries run out."""
        batch = ledger_batch(items)
        if batch.orders:
            self._guard.write(items, lambda: self._write(batch))

    def close(self) -> None:
        self._guard.close()
        if self._conn is not None:
            self._conn.close()


class LedgerSink(DynamicSink[Outbound]):
    """A bytewax sink recording order events in the Postgres ledger.

    In: ``Outbound`` items with an ``order_submitted``, ``order_filled`` or
    ``order_failed`` envelope. Out: per batch one transaction with one
    ``INSERT ... SELECT FROM unnest(...)`` into ``orders`` and one into
    ``fills``. Idempotent: replaying a batch adds no row (unique on
    ``(broker, order_id)``); a terminal status is never moved back.
    Without ``resilience``, a batch is retried for ``retry_s`` s while
    Postgres is unreachable; with it, per its policy, and when that gives up
    the batch's order events go to ``<broker>.orders.<stage>.dlq``.

    :raises PostgresConnectorError: Postgres stayed unreachable, or refused the
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
        return _LedgerPartition(_pool(self._url, f"{step_id}-{worker_index}"), self._retry_s)


def _read(url: str, step: str, query: str, broker: str | None) -> list[dict[str, Any]]:
    with _connect(url, step) as conn:
        return conn.execute(query, {"broker": broker}).fetchall()


def ledger_orders(url: str, broker: str | None = None) -> list[dict[str, Any]]:
    """Return ``orders`` rows (all columns) for ``broker``, or all brokers, by time."""
    return _read(
        url,
        "ledger_orders",
        "SELECT * FROM orders WHERE %(broker)s::text IS NULL OR broker = %(broker)s"
        " ORDER BY broker, order_ts, order_id",
        broker,
    )


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


# --- configuration source (hot reload) -----------------------------------------


EPOCH_WAKE = timedelta(milliseconds=50)
"""Longest a polling input sleeps, so that it never holds an epoch open."""


class _StrategyConfigPartition(StatefulSourcePartition[list[dict[str, Any]], None]):
    """Polls the configuration table; emits the full row list when its digest changes."""

    def __init__(self, url: str, poll_s: float) -> None:
        self._pool = _pool(url, "strategy-config", max_size=1)
        self._poll = timedelta(seconds=poll_s)
        self._next_poll = datetime.now(UTC)
        self._digest: str | None = None
        self._unreachable = False

    def next_batch(self) -> list[list[dict[str, Any]]]:
        now = datetime.now(UTC)
        if now < self._next_poll:
            return []
        self._next_poll = now + self._poll
        try:
            with self._pool.connection() as conn:
                rows = _load_strategies(conn)
        except psycopg.OperationalError as err:
            if not self._unreachable:
                log.warning("strategy config: Postgres unreachable, keeping the last rows: %s", err)
            self._unreachable = True
            return []
        self._unreachable = False
        digest = strategies_digest(rows)
        if digest == self._digest:
            return []
        self._digest = digest
        return [rows]

    def next_awake(self) -> datetime:
        # Wake at least every EPOCH_WAKE even between polls: a sleeping input
        # cannot close its epoch, and Bytewax holds every input (the whole
        # flow) until the epoch closes. Sleeping until the next poll (2 s)
        # capped a live flow at ~1.6k ticks/s with 1 s epochs.
        return min(self._next_poll, datetime.now(UTC) + EPOCH_WAKE)

    def snapshot(self) -> None:
        # Nothing to keep: on resume the table is read and emitted afresh.
        return None

    def close(self) -> None:
        self._pool.close()


class StrategyConfigSource(FixedPartitionedSource[list[dict[str, Any]], None]):
    """A bytewax source of the strategy configuration table, for hot reload.

    Out: the full list of rows (as :func:`load_strategies` returns them,
    inactive ones included) once at start and again each time the content
    changes; the table is polled every ``poll_s`` seconds. One partition, so
    exactly one worker emits; fan it out with a keyed step downstream.
    While Postgres is unreachable nothing is emitted and the flow goes on.
    """

    def __init__(self, url: str, poll_s: float) -> None:
        self._url = url
        self._poll_s = poll_s

    def list_parts(self) -> list[str]:
        """The single partition."""
        return ["strategy_configurations"]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _StrategyConfigPartition:
        """Build the polling partition."""
        return _StrategyConfigPartition(self._url, self._poll_s)
