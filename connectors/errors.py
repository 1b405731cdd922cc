"""Typed errors of the Kafka, Redis and Postgres connectors and the local stack.

Every message names the step and the offending value. None of them ever
carries a password: Postgres and Redis URLs are shown through
:func:`redact_url` only.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from schemas.errors import AlphaPandaError


def redact_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***``, safe to log.

    ``postgresql://user:secret@host:5432/db`` -> ``postgresql://user:***@host:5432/db``;
    a URL without a password, or a ``host:port`` bootstrap list, is returned as is.
    """
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{parts.username or ''}:***@{host}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class ConnectorError(AlphaPandaError):
    """Root of every Kafka, Redis, Postgres and local-stack error."""


class SinkInputError(ConnectorError):
    """A sink received an item it cannot write: a wiring mistake, not bad data."""

    def __init__(self, sink: str, expected: str, item: object) -> None:
        self.sink = sink
        super().__init__(f"{sink}: expected {expected}, got {type(item).__name__}: {item!r:.200}")


class KafkaConnectorError(ConnectorError):
    """The Kafka-API broker refused or did not answer a request."""


class TopicAdminError(KafkaConnectorError):
    """A topic could not be created or described."""


class KafkaDeliveryError(KafkaConnectorError):
    """Messages were not acknowledged by the broker (after librdkafka's own retries)."""


class ConsumeTimeoutError(KafkaConnectorError):
    """A topic was not read to its end within the time allowed."""


class RedisConnectorError(ConnectorError):
    """Redis refused or did not answer, after the client's retries."""


class PostgresConnectorError(ConnectorError):
    """Postgres refused or did not answer, after the connector's retries."""


class MigrationError(PostgresConnectorError):
    """A schema migration failed; the transaction was rolled back."""


class StrategyRowError(PostgresConnectorError):
    """A strategy configuration row to seed lacks a required field."""


class StackError(ConnectorError):
    """The local stack could not start, stop or describe a process."""


class ServerStartError(StackError):
    """A server did not accept connections in time; names the server and its log."""

    def __init__(self, name: str, reason: str, log_path: Path | None = None) -> None:
        self.name = name
        self.log_path = log_path
        where = f" (log: {log_path})" if log_path is not None else ""
        super().__init__(f"{name}: {reason}{where}")
