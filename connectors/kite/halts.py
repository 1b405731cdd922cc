"""The kill switch's flags: Postgres ``trading_halts`` (durable truth) mirrored in a Redis hash.

``alpha-panda halt`` writes Postgres, then Redis; a flow's
:class:`operators.halts.HaltFlags` reads Redis every second through
:class:`HaltReader`. The hash carries a ``__synced__`` field: when Redis
has lost it (restarted without persistence) or cannot be reached, the
reader reads Postgres instead and re-mirrors it.
"""

from __future__ import annotations

import logging
from typing import Any, Final

import orjson
import psycopg
import redis
from psycopg.rows import dict_row

from connectors.errors import PostgresConnectorError, redact_url
from connectors.redis_portfolio import redis_client
from operators.halts import Halt, HaltSet

log = logging.getLogger(__name__)

HALTS_KEY: Final = "alpha-panda:halts"
READER_APPLICATION: Final = "alpha-panda-halt-reader"
"""``application_name`` of a :class:`HaltReader`'s Postgres connection."""
_SYNCED: Final = "__synced__"


def _pg(url: str, step: str, query: str, params: Any = None) -> list[dict[str, Any]]:
    try:
        with psycopg.connect(url, connect_timeout=5, row_factory=dict_row) as conn:
            cursor = conn.execute(query, params)
            return cursor.fetchall() if cursor.description else []
    except psycopg.Error as err:
        msg = f"{step}: Postgres at {redact_url(url)}: {type(err).__name__}: {err}"
        raise PostgresConnectorError(msg) from err


def read_postgres(postgres_url: str) -> HaltSet:
    """Every halt stored in Postgres."""
    rows = _pg(postgres_url, "read halts", "SELECT broker, strategy_id, reason FROM trading_halts")
    return HaltSet.of(Halt(r["broker"], r["strategy_id"], r["reason"]) for r in rows)


def mirror_to_redis(client: redis.Redis, halts: HaltSet) -> None:
    """Replace the Redis hash with ``halts`` (atomically, one MULTI)."""
    mapping: dict[Any, Any] = {
        h.scope: orjson.dumps({"broker": h.broker, "strategy_id": h.strategy_id, "reason": h.reason})
        for h in halts.halts
    }
    mapping[_SYNCED] = b"1"
    pipe = client.pipeline(transaction=True)
    pipe.delete(HALTS_KEY)
    pipe.hset(HALTS_KEY, mapping=mapping)
    pipe.execute()


def _from_hash(raw: Any) -> HaltSet:
    halts = []
    for field, value in raw.items():
        if (field.decode() if isinstance(field, bytes) else field) == _SYNCED:
            continue
        row = orjson.loads(value)
        halts.append(Halt(row["broker"], row["strategy_id"], row.get("reason", "")))
    return HaltSet.of(halts)


def set_halt(postgres_url: str, redis_url: str, halt: Halt, *, by: str = "") -> HaltSet:
    """Halt ``halt.scope`` (replacing its reason if already halted); return every halt now in force."""
    _pg(
        postgres_url,
        "halt",
        "INSERT INTO trading_halts (scope, broker, strategy_id, reason, halted_by)"
        " VALUES (%s, %s, %s, %s, %s)"
        " ON CONFLICT (scope) DO UPDATE SET reason = EXCLUDED.reason, halted_by = EXCLUDED.halted_by,"
        " halted_at = now()",
        (halt.scope, halt.broker, halt.strategy_id, halt.reason, by),
    )
    return _sync(postgres_url, redis_url)


def clear_halts(postgres_url: str, redis_url: str, broker: str | None, strategy_id: str | None) -> list[str]:
    """Lift halts; ``None`` matches any value. Returns the scopes lifted."""
    rows = _pg(
        postgres_url,
        "resume",
        "DELETE FROM trading_halts WHERE (%(b)s::text IS NULL OR broker = %(b)s)"
        " AND (%(s)s::text IS NULL OR strategy_id = %(s)s) RETURNING scope",
        {"b": broker, "s": strategy_id},
    )
    _sync(postgres_url, redis_url)
    return sorted(r["scope"] for r in rows)


def _sync(postgres_url: str, redis_url: str) -> HaltSet:
    halts = read_postgres(postgres_url)
    client = redis_client(redis_url, retries=3)
    try:
        mirror_to_redis(client, halts)
    except redis.RedisError as err:
        # Postgres holds the flag: readers use it while Redis is out, and
        # their periodic check against Postgres catches a stale Redis after.
        log.warning(
            "halt flags: Redis at %s not updated (%s); readers use Postgres", redact_url(redis_url), err
        )
    finally:
        client.close()
    return halts


class HaltReader:
    """``fetch`` for :class:`operators.halts.HaltFlags`: Redis, else Postgres (and re-mirror).

    Every ``verify_every``-th read also reads Postgres and, if Redis
    disagrees (a halt written while Redis was unreachable, then Redis came
    back with its old hash), re-mirrors it and answers with Postgres: at a
    1 s refresh such a halt is seen within ``verify_every`` seconds.
    """

    def __init__(self, redis_url: str, postgres_url: str, *, verify_every: int = 5) -> None:
        self._redis_url = redis_url
        self._postgres_url = postgres_url
        self._client = redis_client(redis_url, retries=1)
        self._verify_every = verify_every
        self._reads = 0
        self._pg: psycopg.Connection[dict[str, Any]] | None = None

    def _read_postgres(self) -> HaltSet:
        """:func:`read_postgres` on one kept connection (reopened once if it broke).

        The reader runs in risk's per-signal step: opening a connection for
        every verifying read stalled the flow for tens of milliseconds.
        """
        try:
            return self._query_halts()
        except psycopg.Error:
            self._close_postgres()  # e.g. Postgres restarted: reopen once
        try:
            return self._query_halts()
        except psycopg.Error as err:
            self._close_postgres()
            where = redact_url(self._postgres_url)
            msg = f"read halts: Postgres at {where}: {type(err).__name__}: {err}"
            raise PostgresConnectorError(msg) from err

    def _query_halts(self) -> HaltSet:
        if self._pg is None or self._pg.closed:
            self._pg = psycopg.connect(
                self._postgres_url,
                connect_timeout=5,
                autocommit=True,
                row_factory=dict_row,
                application_name=READER_APPLICATION,
            )
        rows = self._pg.execute("SELECT broker, strategy_id, reason FROM trading_halts").fetchall()
        return HaltSet.of(Halt(r["broker"], r["strategy_id"], r["reason"]) for r in rows)

    def _close_postgres(self) -> None:
        if self._pg is not None:
            try:
                self._pg.close()
            except psycopg.Error:
                pass
            self._pg = None

    def __call__(self) -> HaltSet:
        """The halts in force.

        Raises:
            PostgresConnectorError: Redis lacked the flags and Postgres failed too.
        """
        try:
            raw = self._client.hgetall(HALTS_KEY)
        except redis.RedisError as err:
            log.warning(
                "halt flags: Redis at %s unreadable (%s); reading Postgres",
                redact_url(self._redis_url),
                type(err).__name__,
            )
            return self._read_postgres()
        self._reads += 1
        if _SYNCED.encode() in raw and self._reads % self._verify_every:
            return _from_hash(raw)
        halts = self._read_postgres()
        if _SYNCED.encode() in raw and _from_hash(raw) == halts:
            return halts
        try:
            mirror_to_redis(self._client, halts)
        except redis.RedisError as err:
            msg = f"halt flags: re-mirroring to {redact_url(self._redis_url)} failed: {err}"
            log.warning(msg)
        return halts

    def close(self) -> None:
        """Close the Redis client and the Postgres connection."""
        self._client.close()
        self._close_postgres()
