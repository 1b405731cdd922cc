"""The bytewax Kafka sources: one input partition per Kafka partition, per message or per poll."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from bytewax.connectors.kafka import KafkaSource, KafkaSourceMessage
from bytewax.inputs import StatefulSourcePartition
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition
from confluent_kafka import KafkaError as ConfluentKafkaError
from confluent_kafka.admin import AdminClient

from connectors.errors import OffsetOutOfRangeError, TopicAdminError
from connectors.kafka.config import consumer_config, kafka_config
from connectors.kafka.offsets import log_end, log_start, raise_if_position_lost
from schemas.codec import RawBatch, RawMessage

log = logging.getLogger(__name__)

IDLE_POLL: Final = timedelta(milliseconds=1)
"""How long a batching partition that found nothing waits before its next poll.

Its poll never blocks: a blocking poll of an empty partition held the
worker, and every other partition with it, for its whole timeout.
"""


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
        """Build the partition's consumer; refuse to resume past the end of its log (:meth:`check_resume`)."""
        self.check_resume(step_id, for_part, resume_state)
        return super().build_part(step_id, for_part, resume_state)

    def check_resume(self, step_id: str, for_part: str, resume_state: int | None) -> None:
        """Refuse a resume position beyond the end of the partition's log.

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


class _BatchingPartition(StatefulSourcePartition[RawBatch, int]):
    """One Kafka partition, read with confluent-kafka directly: every poll becomes one :class:`RawBatch`.

    The columns are filled straight from the client's messages (no object
    per message on the way). The resume state is the next offset to read,
    as bytewax's own partition keeps it. A consumer error is logged and
    skipped, except a lost position, which stops the flow
    (:func:`raise_if_position_lost`); with ``enable.partition.eof`` the
    partition ends after the batch that reached the end of the log.

    A poll takes what the client has fetched already and never waits; after
    an empty one, the partition asks to be polled again :data:`IDLE_POLL`
    later (``next_awake``), so the worker sleeps instead of spinning and a
    tick on another partition is never held behind this one's wait.
    """

    def __init__(self, consumer: Consumer, topic: str, partition: int, offset: int, batch_size: int) -> None:
        self._consumer = consumer
        self._topic = topic
        self._partition = partition
        self._offset = offset
        self._batch_size = batch_size
        self._eof = False
        self._last_stamp: tuple[int, int] | None = None
        self._last_at: datetime | None = None
        self._awake: datetime | None = None
        consumer.assign([TopicPartition(topic, partition, _concrete(consumer, topic, partition, offset))])

    def next_batch(self) -> list[RawBatch]:
        if self._eof:
            raise StopIteration
        values: list[bytes] = []
        offsets: list[int] = []
        keys: list[bytes | None] = []
        stamps: list[datetime | None] = []
        for message in self._consumer.consume(self._batch_size, 0):
            error = message.error()
            if error is not None:
                if error.code() == ConfluentKafkaError._PARTITION_EOF:
                    self._eof = True
                    break
                raise_if_position_lost(self._topic, error, self._topic, self._partition, message.offset())
                log.warning("Kafka consumer error on %s[%d]: %s", self._topic, self._partition, error)
                continue
            values.append(message.value() or b"")  # a tombstone is poison to the codec
            offsets.append(message.offset())  # type: ignore[arg-type]  # set on every consumed message
            keys.append(message.key())
            stamps.append(self._timestamp(message.timestamp()))
        if not values:
            self._awake = None if self._eof else datetime.now(UTC) + IDLE_POLL
            return []
        self._awake = None
        self._offset = offsets[-1] + 1
        return [RawBatch(self._topic, values, offsets, self._partition, keys, None, stamps)]

    def _timestamp(self, kind_and_ms: tuple[int, int]) -> datetime | None:
        """The Kafka timestamp as a UTC datetime (None if absent); a burst shares one per millisecond."""
        if kind_and_ms != self._last_stamp:
            self._last_stamp = kind_and_ms
            self._last_at = _timestamp(kind_and_ms)
        return self._last_at

    def next_awake(self) -> datetime | None:
        return self._awake

    def snapshot(self) -> int:
        return self._offset

    def close(self) -> None:
        self._consumer.close()


def _concrete(consumer: Consumer, topic: str, partition: int, offset: int) -> int:
    """``offset``, with ``OFFSET_BEGINNING`` looked up as the log's first offset (:func:`log_start`).

    The resume state stays the logical offset until a message is read, as
    bytewax keeps it; if the lookup fails, the logical offset is assigned.
    ``OFFSET_END`` stays logical: on Tansu the high watermark can trail the log end.
    """
    if offset != OFFSET_BEGINNING:
        return offset
    try:
        return log_start(consumer, topic, partition, 5.0)
    except KafkaException:
        return offset


class _BatchingKafkaSource(_KafkaSource):
    """:class:`_KafkaSource` emitting one :class:`RawBatch` per poll of a partition."""

    def __init__(self, bootstrap: str, topics: list[str], config: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(bootstrap, topics, add_config=config, **kwargs)
        self._consumer_config = config

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _BatchingPartition:
        """The partition's own consumer, at ``resume_state`` or the starting offset."""
        self.check_resume(step_id, for_part, resume_state)
        index, topic = for_part.split("-", 1)
        offset = self._starting_offset if resume_state is None else resume_state
        return _BatchingPartition(
            Consumer(self._consumer_config), topic, int(index), offset, self._batch_size
        )


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
    config = {**consumer_config(bootstrap, eof=not tail), **(add_config or {})}
    if batched:
        return _BatchingKafkaSource(
            bootstrap, list(topics), config, tail=tail, starting_offset=starting_offset, batch_size=batch_size
        )
    # bytewax sets these itself per partition; keep its values.
    for key in ("bootstrap.servers", "group.id", "enable.partition.eof", "enable.auto.commit"):
        config.pop(key)
    return _KafkaSource(
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
