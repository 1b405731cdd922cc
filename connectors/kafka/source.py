"""The bytewax Kafka sources: one input partition per Kafka partition, per message or per poll."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from bytewax.connectors.kafka import KafkaSource, KafkaSourceMessage
from bytewax.inputs import StatefulSourcePartition
from confluent_kafka import OFFSET_BEGINNING
from confluent_kafka.admin import AdminClient

from connectors.errors import OffsetOutOfRangeError, TopicAdminError
from connectors.kafka.config import consumer_config, kafka_config
from connectors.kafka.offsets import log_end, raise_if_offset_lost
from schemas.codec import RawBatch, RawMessage

log = logging.getLogger(__name__)


class _KafkaSource(KafkaSource):
    """bytewax's KafkaSource, listing partitions with client-only settings.

    bytewax passes the consumer settings to its AdminClient too, which makes
    librdkafka warn about every consumer-only property.
    """

    def __init__(self, bootstrap: str, topics: list[str], **kwargs: Any) -> None:
        super().__init__([bootstrap], topics, **kwargs)
        self._bootstrap = bootstrap
        self._topic_names = topics

    def list_parts(self) -> list[str]:
        """One input partition per Kafka partition, named ``<index>-<topic>`` as bytewax does."""
        admin = AdminClient(kafka_config(self._bootstrap))
        parts = []
        for topic in self._topic_names:
            metadata = admin.list_topics(topic, timeout=10).topics[topic]
            if metadata.error is not None:
                msg = f"kafka_source: cannot list partitions of {topic!r}: {metadata.error.str()}"
                raise TopicAdminError(msg)
            parts += [f"{index}-{topic}" for index in sorted(metadata.partitions)]
        return parts

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> Any:
        """Build the partition's consumer; refuse to resume past the end of its log.

        A broker that lost data (Tansu keeps topics in memory) or a recreated
        topic ends before the snapshotted position; a consumer there would wait
        and then skip the first new messages without a word.

        Raises:
            OffsetOutOfRangeError: ``resume_state`` is beyond the log end.
        """
        if resume_state is not None and resume_state > 0:
            index, topic = for_part.split("-", 1)
            end = log_end(self._bootstrap, topic, int(index))
            if resume_state > end:
                msg = (
                    f"kafka_source {step_id}: {topic}[{index}] resumes at offset {resume_state} "
                    f"but the log ends at {end}; the broker lost data or the topic was recreated. "
                    "Refusing to skip: reset the flow's recovery state deliberately"
                )
                raise OffsetOutOfRangeError(msg)
        return super().build_part(step_id, for_part, resume_state)


class _BatchingPartition(StatefulSourcePartition[RawBatch, Any]):
    """A Kafka partition whose every poll becomes one :class:`RawBatch` (errors are logged)."""

    def __init__(self, inner: Any, topic: str) -> None:
        self._inner = inner
        self._topic = topic

    def next_batch(self) -> list[RawBatch]:
        values: list[bytes] = []
        offsets: list[int] = []
        keys: list[bytes | None] = []
        partitions: list[int] = []
        stamps: list[datetime | None] = []
        for message in self._inner.next_batch():
            if not isinstance(message, KafkaSourceMessage):
                raise_if_offset_lost(self._topic, message)
                log.warning("Kafka consumer error on %s: %s", self._topic, message)
                continue
            raw = raw_message(message)
            values.append(raw.value)
            offsets.append(raw.offset if raw.offset is not None else -1)
            keys.append(raw.key)
            partitions.append(raw.partition if raw.partition is not None else -1)
            stamps.append(raw.timestamp)
        if not values:
            return []
        return [RawBatch(self._topic, values, offsets, None, keys, partitions, stamps)]

    def next_awake(self) -> datetime | None:
        return self._inner.next_awake()  # type: ignore[no-any-return]

    def snapshot(self) -> Any:
        return self._inner.snapshot()

    def close(self) -> None:
        self._inner.close()


class _BatchingKafkaSource(_KafkaSource):
    """:class:`_KafkaSource` emitting one :class:`RawBatch` per poll of a partition."""

    def build_part(self, step_id: str, for_part: str, resume_state: Any) -> _BatchingPartition:
        """Wrap bytewax's partition reader."""
        topic = for_part.split("-", 1)[1]
        return _BatchingPartition(super().build_part(step_id, for_part, resume_state), topic)


def kafka_source(
    bootstrap: str,
    topics: Iterable[str],
    *,
    tail: bool = True,
    starting_offset: int = OFFSET_BEGINNING,
    batch_size: int = 1000,
    add_config: dict[str, Any] | None = None,
    batched: bool = False,
) -> KafkaSource:
    """Return a bytewax source reading ``topics``, one input partition per Kafka partition.

    ``batched``: emit one :class:`schemas.codec.RawBatch` per poll instead.

    Emits :class:`bytewax.connectors.kafka.KafkaSourceMessage` (``key``,
    ``value`` bytes, ``topic``, ``partition``, ``offset``, ``timestamp`` as
    ``(type, epoch ms)``) and, for consumer errors, ``KafkaError`` items
    carrying one — errors never stop the flow (``raise_on_errors=False``).
    ``tail=False`` ends the source at the current end of every partition.
    ``starting_offset`` is ``OFFSET_BEGINNING`` (default) or ``OFFSET_END``;
    after a recovery resume, bytewax's stored offsets win.
    """
    config = consumer_config(bootstrap, eof=not tail)
    # bytewax sets these itself per partition; keep its values.
    for key in ("bootstrap.servers", "group.id", "enable.partition.eof", "enable.auto.commit"):
        config.pop(key)
    config.update(add_config or {})
    return (_BatchingKafkaSource if batched else _KafkaSource)(
        bootstrap,
        list(topics),
        tail=tail,
        starting_offset=starting_offset,
        add_config=config,
        batch_size=batch_size,
        raise_on_errors=False,
    )


def _timestamp(kind_and_ms: tuple[int, int] | None) -> datetime | None:
    if kind_and_ms is None:
        return None
    kind, epoch_ms = kind_and_ms
    if kind == 0 or epoch_ms < 0:  # TIMESTAMP_NOT_AVAILABLE
        return None
    return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)


def raw_message(message: KafkaSourceMessage[bytes | None, bytes | None]) -> RawMessage:
    """Turn a bytewax Kafka message into the codec's :class:`RawMessage`.

    A missing value becomes ``b""`` (a tombstone is poison to the codec); the
    Kafka timestamp becomes a UTC datetime, or ``None`` if the broker has none;
    headers are kept as the client gives them (None when there are none).
    """
    return RawMessage(
        topic=message.topic or "",
        key=message.key,
        value=message.value or b"",
        partition=message.partition,
        offset=message.offset,
        timestamp=_timestamp(message.timestamp),
        headers=message.headers or None,
    )
