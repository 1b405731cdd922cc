"""Redis portfolio store: the latest ``pnl_snapshot`` of each strategy and broker.

Key ``<broker>:portfolio:<strategy_id>`` holds the snapshot's ``data`` as
JSON (DESIGN.md, Stores). Brokers never share keys.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Final

import msgspec
import orjson
import redis
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from connectors.dlq import Resilience, SinkGuard
from connectors.errors import RedisConnectorError, SinkInputError, describe_error, redact_url
from schemas.envelope import Outbound, PnlEnvelope, Published, messages_of

log = logging.getLogger(__name__)

_SINK_STEP: Final = "redis_portfolio_sink"
_REPLAY_STEP: Final = "redis_replay"

DEFAULT_RETRIES: Final = 40
"""Reconnect attempts per command; with the 1 s backoff cap this rides out a
Redis restart of about half a minute before the sink gives up."""

_json: Final = msgspec.json.Encoder()

REDIS_RULES: Final = (
    ("BusyLoadingError", "transient"),
    ("AuthenticationError", "authentication"),
    ("AuthorizationError", "authentication"),
    ("TimeoutError", "transient"),
    ("ConnectionError", "infrastructure"),
    ("ReadOnlyError", "transient"),
    ("ResponseError", "business"),
)
"""How :func:`operators.failures.classify` reads redis-py errors."""


def portfolio_key(broker: str, strategy_id: str) -> str:
    """Return the Redis key of one strategy's portfolio at ``broker``."""
    return f"{broker}:portfolio:{strategy_id}"


def redis_client(redis_url: str, *, retries: int = DEFAULT_RETRIES) -> redis.Redis:
    """Return a client for ``redis_url`` that reconnects with backoff (0.05 s doubling to 1 s).

    Connection and timeout errors are retried ``retries`` times; writes here
    are plain SETs, so a retried pipeline is harmless.
    """
    return redis.Redis.from_url(
        redis_url,
        socket_connect_timeout=2,
        socket_timeout=5,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
        health_check_interval=30,
    )


def latest_snapshots(items: list[Outbound]) -> dict[str, bytes]:
    """Return ``{redis key: snapshot JSON}`` keeping only the last snapshot per key.

    In: :class:`Outbound` items whose envelope is a :class:`PnlEnvelope`, in
    stream order. The key comes from the snapshot's own ``broker`` and
    ``strategy_id``.

    Raises:
        SinkInputError: an item is not a P&L snapshot.
    """
    latest: dict[str, bytes] = {}
    for item in items:
        if not isinstance(item, Outbound) or not isinstance(item.envelope, PnlEnvelope):
            raise SinkInputError(_SINK_STEP, "Outbound with a PnlEnvelope", item)
        snapshot = item.envelope.data
        latest[portfolio_key(snapshot.broker, snapshot.strategy_id)] = _json.encode(snapshot)
    return latest


class _PortfolioPartition(StatelessSinkPartition[Published]):
    def __init__(self, client: redis.Redis, url_for_log: str, guard: SinkGuard | None = None) -> None:
        self._client = client
        self._url_for_log = url_for_log
        self._guard = guard

    def _write(self, latest: dict[str, bytes]) -> None:
        pipe = self._client.pipeline(transaction=False)
        for key, value in latest.items():
            pipe.set(key, value)
        pipe.execute()

    def write_batch(self, items: list[Published]) -> None:
        """Write the latest snapshot per key of this batch in one pipeline round trip."""
        messages = messages_of(items)
        latest = latest_snapshots(messages)
        if not latest:
            return
        if self._guard is not None:
            self._guard.write(messages, lambda: self._write(latest))
            return
        try:
            self._write(latest)
        except redis.RedisError as err:
            msg = (
                f"redis_portfolio_sink: writing {len(latest)} snapshot(s) to "
                f"{self._url_for_log} failed: {err}"
            )
            raise RedisConnectorError(msg) from err

    def close(self) -> None:
        if self._guard is not None:
            self._guard.close()
        self._client.close()


class RedisPortfolioSink(DynamicSink[Published]):
    """A bytewax sink storing P&L snapshots in Redis.

    In: ``Outbound`` items with a :class:`PnlEnvelope`, or lists of them. Out: per batch, one
    non-transactional pipeline of ``SET <broker>:portfolio:<strategy_id>
    <snapshot data JSON>``, only the batch's latest snapshot per key.
    Re-writing a snapshot is harmless, so at-least-once delivery is enough.

    With ``resilience``, failed writes are retried per its policy (the
    client itself does not retry) and, when it gives up, the batch's
    snapshots go to ``<broker>.pnl.snapshots.dlq``; without, the client
    retries ``retries`` times.

    Raises:
        RedisConnectorError: Redis stayed unreachable through every retry
            (without ``resilience``).
    """

    def __init__(
        self, redis_url: str, *, retries: int = DEFAULT_RETRIES, resilience: Resilience | None = None
    ) -> None:
        self._url = redis_url
        self._retries = retries
        self._resilience = resilience

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _PortfolioPartition:
        """Build this worker's client (connections are opened lazily)."""
        if self._resilience is None:
            return _PortfolioPartition(redis_client(self._url, retries=self._retries), redact_url(self._url))
        guard = self._resilience.guard(_SINK_STEP, REDIS_RULES, worker_index)
        return _PortfolioPartition(redis_client(self._url, retries=0), redact_url(self._url), guard)


def store_if_newer(redis_url: str, items: list[Outbound]) -> int:
    """Write replayed snapshots, each only if the stored one is not newer (event time).

    For dead letters replayed long after: a snapshot never overwrites a
    later one of the same account. Returns how many were written.

    Raises:
        RedisConnectorError: Redis could not be written.
    """
    client = redis_client(redis_url, retries=3)
    written = 0
    try:
        for item in items:
            if not isinstance(item.envelope, PnlEnvelope):
                raise SinkInputError(_REPLAY_STEP, "Outbound with a PnlEnvelope", item)
            snapshot = item.envelope.data
            key = portfolio_key(snapshot.broker, snapshot.strategy_id)
            stored = client.get(key)
            if stored is not None:
                stored_at = datetime.fromisoformat(orjson.loads(stored)["timestamp"])
                if stored_at > snapshot.timestamp:
                    continue
            client.set(key, _json.encode(snapshot))
            written += 1
    except redis.RedisError as err:
        where = redact_url(redis_url)
        msg = f"redis_replay: writing snapshots to {where} failed: {describe_error(err, redis_url)}"
        raise RedisConnectorError(msg) from err
    finally:
        client.close()
    return written


def read_portfolios(redis_url: str, broker: str) -> dict[str, dict[str, Any]]:
    """Return ``{strategy_id: snapshot data}`` of every portfolio stored for ``broker``.

    Raises:
        RedisConnectorError: Redis could not be read.
    """
    prefix = portfolio_key(broker, "")
    client = redis_client(redis_url, retries=3)
    try:
        keys = sorted(client.scan_iter(match=f"{prefix}*", count=500))
        values = client.mget(keys) if keys else []
    except redis.RedisError as err:
        where = redact_url(redis_url)
        reason = describe_error(err, redis_url)
        msg = f"read_portfolios: reading {broker!r} portfolios from {where} failed: {reason}"
        raise RedisConnectorError(msg) from err
    finally:
        client.close()
    return {
        key.decode()[len(prefix) :]: orjson.loads(value)
        for key, value in zip(keys, values, strict=True)
        if value is not None
    }


class _NewestPartition(StatelessSinkPartition[Outbound]):
    def __init__(self, url: str) -> None:
        self._url = url

    def write_batch(self, items: list[Outbound]) -> None:
        """Store each snapshot unless a newer one is stored."""
        store_if_newer(self._url, items)


class NewestSnapshotSink(DynamicSink[Outbound]):
    """A bytewax sink for replayed snapshots: see :func:`store_if_newer`.

    In: ``Outbound`` items with a :class:`PnlEnvelope`. Out: Redis keys as
    :class:`RedisPortfolioSink`, never moved back to an older snapshot.
    """

    def __init__(self, redis_url: str) -> None:
        self._url = redis_url

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _NewestPartition:
        """Build this worker's writer."""
        return _NewestPartition(self._url)
