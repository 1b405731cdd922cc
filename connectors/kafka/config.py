"""Kafka client settings: where and how every producer, consumer and admin client connects."""

from __future__ import annotations

from typing import Any, Final

from connectors.errors import KafkaConnectorError

DELIVERY_TIMEOUT_MS: Final = 60_000
"""How long librdkafka retries a message before the sink gives up and crashes
the flow (bytewax recovery then resumes from the last snapshot)."""


SECURITY_KEYS: Final = frozenset(
    {
        "security.protocol",
        "sasl.mechanism",
        "sasl.mechanisms",
        "sasl.username",
        "sasl.password",
        "ssl.ca.location",
        "ssl.certificate.location",
        "ssl.key.location",
        "ssl.key.password",
        "ssl.endpoint.identification.algorithm",
    }
)
"""The librdkafka settings :func:`use_client_security` accepts."""

_client_security: dict[str, str] = {}


def use_client_security(settings: dict[str, str]) -> None:
    """Make every Kafka client this process builds from now on use ``settings``.

    ``settings`` are librdkafka security properties (``security.protocol``,
    ``sasl.*``, ``ssl.*``; see :data:`SECURITY_KEYS`), set once at start-up
    by a dataflow or the CLI from :class:`alpha_panda.settings.Settings`.
    They go to producers, consumers and admin clients alike, through
    :func:`kafka_config`. An empty mapping restores the plaintext default.

    Raises:
        KafkaConnectorError: a key is not a security setting.
    """
    unknown = sorted(set(settings) - SECURITY_KEYS)
    if unknown:
        known = sorted(SECURITY_KEYS)
        msg = f"use_client_security: {unknown} are not Kafka security settings; known: {known}"
        raise KafkaConnectorError(msg)
    _client_security.clear()
    _client_security.update(settings)


def kafka_config(bootstrap: str) -> dict[str, Any]:
    """Return the librdkafka settings every client shares: where and how to connect.

    ``bootstrap`` is a comma-separated ``host:port`` list; the security
    settings of :func:`use_client_security` are included.
    """
    return {
        "bootstrap.servers": bootstrap,
        "client.id": "alpha-panda",
        # Ticks are small; Nagle's algorithm would only add latency.
        "socket.nagle.disable": True,
        **_client_security,
    }


def producer_config(bootstrap: str) -> dict[str, Any]:
    """Return producer settings: idempotent, acks from all replicas, low latency.

    ``linger.ms`` 2 batches messages produced in the same burst without
    holding a lone tick back noticeably; lz4 is the cheapest compression
    that every supported broker (Tansu included) accepts.
    """
    return {
        **kafka_config(bootstrap),
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 2,
        "compression.type": "lz4",
        "delivery.timeout.ms": DELIVERY_TIMEOUT_MS,
    }


def consumer_config(bootstrap: str, *, eof: bool = False) -> dict[str, Any]:
    """Return consumer settings for manual assignment (no group, no commits).

    ``eof`` asks for an end-of-partition event when a partition is read to
    its current end. ``group.id`` is required by librdkafka but never joined.
    """
    return {
        **kafka_config(bootstrap),
        "group.id": "alpha-panda-unjoined",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": eof,
        # The broker answers an empty fetch after this long; lower means a new
        # message is seen sooner on brokers that do not wake fetches early.
        "fetch.wait.max.ms": 20,
        "fetch.min.bytes": 1,
        # A position outside the log is an error event, never a silent jump
        # to the start or the end (see raise_if_offset_lost, log_end).
        "auto.offset.reset": "error",
    }
