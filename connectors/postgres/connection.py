"""Connections to PostgreSQL: one transaction, a pool, retries while it is unreachable.

Every function takes the database URL as a plain ``str`` (callers unwrap
their ``SecretStr``); it is never logged or put in an error message except
through :func:`connectors.errors.redact_url`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Final, TypeVar

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from connectors.errors import PostgresConnectorError, describe_error, redact_url

log = logging.getLogger("connectors.postgres")

T = TypeVar("T")

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
def connect(url: str, step: str) -> Iterator[psycopg.Connection[dict[str, Any]]]:
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

    Raises:
        PostgresConnectorError: it did not.
    """
    with connect(url, "ping") as conn:
        conn.execute("SELECT 1")


def with_retry(pool: ConnectionPool, step: str, retry_s: float, work: Callable[[Any], T]) -> T:
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


def connection_pool(url: str, name: str, max_size: int = 2) -> ConnectionPool:
    """A pool of dict-row connections to ``url``, opened now (connects in the background)."""
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


class ReopeningConnection:
    """One connection to ``url``, opened on first use and again after it broke.

    A plain connection (not a pool) fails at once while Postgres is down, so
    the caller's retry policy, not a pool timeout, decides how long work waits.
    """

    def __init__(self, url: str) -> None:
        self._url = url
        self._conn: psycopg.Connection[Any] | None = None

    def run(self, work: Callable[[psycopg.Connection[Any]], object]) -> None:
        """Run ``work(conn)`` in one transaction; a broken connection is dropped and the error raised."""
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self._url, connect_timeout=CONNECT_TIMEOUT_S)
        try:
            with self._conn.transaction():
                work(self._conn)
        except psycopg.Error:
            if self._conn.broken or self._conn.closed:
                self._conn = None
            raise

    def close(self) -> None:
        """Close the connection if one is open."""
        if self._conn is not None:
            self._conn.close()
