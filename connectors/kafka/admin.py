"""Topic admin: create the pipeline's topics before producers start, list what exists."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from confluent_kafka import KafkaError as ConfluentError
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from connectors.errors import TopicAdminError
from connectors.kafka.config import kafka_config
from schemas.topics import BROKERS, all_topics

log = logging.getLogger(__name__)


def _topic_partition_counts(admin: AdminClient, timeout_s: float) -> dict[str, int]:
    metadata = admin.list_topics(timeout=timeout_s)
    return {name: len(meta.partitions) for name, meta in metadata.topics.items()}


def create_topics(
    bootstrap: str,
    topics: list[str],
    partitions: int,
    retention_ms: int,
    *,
    timeout_s: float = 15.0,
) -> list[str]:
    """Create ``topics`` with ``partitions`` partitions and ``retention.ms`` = ``retention_ms``.

    Idempotent: a topic that already exists is left as it is (a warning is
    logged if its partition count differs). Returns the names created now.

    Raises:
        TopicAdminError: the broker refused a topic or did not answer.
    """
    admin = AdminClient(kafka_config(bootstrap))
    try:
        existing = _topic_partition_counts(admin, timeout_s)
    except Exception as err:
        msg = f"create_topics: cannot list topics on {bootstrap}: {err}"
        raise TopicAdminError(msg) from err
    wanted = [name for name in dict.fromkeys(topics) if name not in existing]
    created: list[str] = []
    if wanted:
        new = [NewTopic(name, partitions, 1, config={"retention.ms": str(retention_ms)}) for name in wanted]
        futures = admin.create_topics(new, operation_timeout=timeout_s, request_timeout=timeout_s)
        for name, future in futures.items():
            try:
                future.result()
            except Exception as err:
                code = err.args[0].code() if err.args and hasattr(err.args[0], "code") else None
                if code == ConfluentError.TOPIC_ALREADY_EXISTS:
                    continue
                msg = f"create_topics: cannot create topic {name!r} on {bootstrap}: {err}"
                raise TopicAdminError(msg) from err
            created.append(name)
    for name in topics:
        count = existing.get(name)
        if count is not None and count != partitions:
            log.warning("topic %s exists with %d partitions, not %d", name, count, partitions)
    return created


def create_pipeline_topics(
    bootstrap: str,
    brokers: Iterable[str] = BROKERS,
    *,
    partitions: int,
    retention_ms: int,
) -> list[str]:
    """Create every topic of the pipeline for ``brokers``, dead-letter topics included.

    See :func:`schemas.topics.all_topics` for the list; returns the names created now.
    """
    return create_topics(bootstrap, all_topics(tuple(brokers)), partitions, retention_ms)


def list_topics(bootstrap: str, *, timeout_s: float = 10.0) -> dict[str, int]:
    """Return ``{topic: partition count}`` for every topic on the broker.

    Raises:
        TopicAdminError: the broker did not answer.
    """
    try:
        return _topic_partition_counts(AdminClient(kafka_config(bootstrap)), timeout_s)
    except Exception as err:
        msg = f"list_topics: cannot list topics on {bootstrap}: {err}"
        raise TopicAdminError(msg) from err
