"""Typed errors of the Kafka, Redis and Postgres connectors and the local stack.

Every message names the step and the offending value. None of them ever
carries a password: Postgres and Redis URLs are shown through
:func:`redact_url` only, and driver errors through :func:`describe_error`
(see :mod:`connectors.redaction`).
"""

from __future__ import annotations

from pathlib import Path

from connectors.redaction import describe_error as describe_error
from connectors.redaction import redact_text as redact_text
from connectors.redaction import redact_url as redact_url
from schemas.errors import AlphaPandaError


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


class OffsetOutOfRangeError(KafkaConnectorError):
    """A consumer's position is not in the log (truncated, or the broker lost data).

    A flow stops on it rather than jump to another offset (``auto.offset.reset``
    is ``error``): skipping would silently lose or repeat messages.
    """


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
