"""Kafka I/O: client settings, topic admin, the bytewax source and sink, small helpers.

Works against any Kafka-API broker (Redpanda, Apache Kafka, Tansu). All
consumers here use manual partition assignment, never consumer groups:
offsets are bytewax's recovery state, and group joins are slow on Tansu.

Tansu (the local broker) quirks seen with librdkafka 2.x, all handled here:

- its high watermark is the base offset of the *last record batch* + 1, not
  the last offset + 1, so watermarks understate the log end and cannot be used
  for lag or for "read until offset N"; end-of-partition events are still
  correct because a consumer only passes the watermark after the last batch.
- producing to an unknown topic creates it (with the broker's default
  partition count), so :func:`create_topics` must run before producers start.
- topic configs (``retention.ms``) are accepted on create but not reported
  back by ``describe_configs``.
- idempotent producers and lz4/zstd/snappy/gzip compression all work.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from bytewax.connectors.kafka import KafkaSource, KafkaSourceMessage
from bytewax.inputs import StatefulSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, Producer, TopicPartition
from confluent_kafka import KafkaError as ConfluentError
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from connectors.errors import (
    ConsumeTimeoutError,
    KafkaConnectorError,
    KafkaDeliveryError,
    OffsetOutOfRangeError,
    SinkInputError,
    TopicAdminError,
)
from schemas.codec import RawBatch, RawMessage, encode
from schemas.envelope import Outbound
from schemas.topics import BROKERS, all_topics

log = logging.getLogger(__name__)

_SINK_STEP: Final = "kafka_sink"

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

    :raises KafkaConnectorError: a key is not a security setting.
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

    :raises TopicAdminError: the broker refused a topic or did not answer.
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

    :raises TopicAdminError: the broker did not answer.
    """
    try:
        return _topic_partition_counts(AdminClient(kafka_config(bootstrap)), timeout_s)
    except Exception as err:
        msg = f"list_topics: cannot list topics on {bootstrap}: {err}"
        raise TopicAdminError(msg) from err


class _DeliveryReport:
    """Collects librdkafka delivery callbacks of one flush round."""

    def __init__(self) -> None:
        self.failures: list[str] = []

    def __call__(self, err: ConfluentError | None, msg: Message) -> None:
        if err is not None:
            self.failures.append(f"{msg.topic()} key={msg.key()!r}: {err.str()}")

    def raise_failures(self, step: str, undelivered: int) -> None:
        if undelivered:
            msg = f"{step}: {undelivered} message(s) still unacknowledged after the flush timeout"
            raise KafkaDeliveryError(msg)
        if self.failures:
            shown = "; ".join(self.failures[:3])
            msg = f"{step}: {len(self.failures)} message(s) not delivered: {shown}"
            raise KafkaDeliveryError(msg)


def _produce(  # noqa: PLR0913 - librdkafka's produce arguments, passed through
    producer: Producer,
    topic: str,
    key: bytes | None,
    value: bytes,
    report: Any,
    partition: int = -1,
    headers: Any = None,
) -> None:
    """Queue one message, waiting for room if librdkafka's local queue is full.

    ``partition`` -1 lets the producer's partitioner choose from the key;
    ``headers`` (``(name, value)`` pairs) go with the record when given.
    """
    while True:
        try:
            if headers is None:
                producer.produce(topic, value=value, key=key, partition=partition, on_delivery=report)
            else:
                # librdkafka takes a list or a dict, never a tuple.
                producer.produce(
                    topic,
                    value=value,
                    key=key,
                    partition=partition,
                    on_delivery=report,
                    headers=list(headers),
                )
        except BufferError:
            producer.poll(0.05)
        else:
            return


class _OutboundKafkaPartition(StatelessSinkPartition[Outbound]):
    """Produces one batch of :class:`Outbound` items, then flushes once."""

    def __init__(self, producer: Producer, flush_timeout_s: float) -> None:
        self._producer = producer
        self._flush_timeout_s = flush_timeout_s
        self._partitions: dict[str, int] = {}

    def _partition(self, topic: str, partition_key: str | None) -> int:
        """The partition of ``partition_key`` (crc32 mod partition count), or -1."""
        if partition_key is None:
            return -1
        count = self._partitions.get(topic)
        if count is None:
            metadata = self._producer.list_topics(topic, timeout=10)
            count = self._partitions[topic] = len(metadata.topics[topic].partitions) or 1
        return zlib.crc32(partition_key.encode("utf-8")) % count

    def write_batch(self, items: list[Outbound]) -> None:
        """Produce every item, wait for all acknowledgements, raise if any failed."""
        report = _DeliveryReport()
        for item in items:
            if not isinstance(item, Outbound):
                raise SinkInputError(_SINK_STEP, "Outbound", item)
            partition = self._partition(item.topic, item.partition_key)
            value = encode(item.envelope)
            _produce(self._producer, item.topic, item.key.encode(), value, report, partition, item.headers)
        undelivered = self._producer.flush(self._flush_timeout_s)
        report.raise_failures("kafka_sink", undelivered)

    def close(self) -> None:
        """Deliver anything still queued before the worker stops."""
        self._producer.flush(self._flush_timeout_s)


class OutboundKafkaSink(DynamicSink[Outbound]):
    """A bytewax sink writing :class:`Outbound` items to their own topics.

    In: ``Outbound(topic, key, envelope)``. Out: a Kafka message on ``topic``
    with key ``key`` (UTF-8), value ``schemas.codec.encode(envelope)`` and
    the item's ``headers``, if any.
    Each worker owns one idempotent producer; a batch is acknowledged as a
    whole before the next one starts (at-least-once with bytewax recovery).

    :raises KafkaDeliveryError: from ``write_batch`` when the broker did not
        acknowledge a message within ``delivery.timeout.ms``.
    """

    def __init__(self, bootstrap: str, add_config: dict[str, Any] | None = None) -> None:
        self._config = {**producer_config(bootstrap), **(add_config or {})}
        self._flush_timeout_s = self._config["delivery.timeout.ms"] / 1000 + 5

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _OutboundKafkaPartition:
        """Build this worker's producer."""
        config = {**self._config, "client.id": f"alpha-panda-{step_id}-{worker_index}"}
        return _OutboundKafkaPartition(Producer(config), self._flush_timeout_s)


def kafka_sink(bootstrap: str, add_config: dict[str, Any] | None = None) -> OutboundKafkaSink:
    """Return the bytewax sink for :class:`Outbound` items; see :class:`OutboundKafkaSink`."""
    return OutboundKafkaSink(bootstrap, add_config)


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

        :raises OffsetOutOfRangeError: ``resume_state`` is beyond the log end.
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


_OFFSET_LOST: Final = frozenset({ConfluentError._AUTO_OFFSET_RESET, ConfluentError.OFFSET_OUT_OF_RANGE})


def raise_if_offset_lost(step_id: str, item: Any) -> None:
    """Stop on a consumer error meaning its position is outside the log; ignore other items.

    ``item`` is what a :func:`kafka_source` emits: a message, or an error
    item carrying a confluent ``KafkaError`` as ``err``.

    :raises OffsetOutOfRangeError: the error is ``OFFSET_OUT_OF_RANGE`` or
        ``_AUTO_OFFSET_RESET`` (raised instead of a reset, see consumer_config).
    """
    err = getattr(item, "err", None)
    if err is None or err.code() not in _OFFSET_LOST:
        return
    where = getattr(item, "msg", None)
    topic = getattr(where, "topic", None)
    partition = getattr(where, "partition", None)
    offset = getattr(where, "offset", None)
    msg = (
        f"{step_id}: the position of {topic}[{partition}] (offset {offset}) is not in the log "
        f"({err.name()}); refusing to skip to another offset"
    )
    raise OffsetOutOfRangeError(msg)


def log_end(bootstrap: str, topic: str, partition: int, timeout_s: float = 10.0) -> int:
    """The exact offset after the last message of ``topic[partition]`` (0 when empty).

    Tansu's high watermark can understate it (see the module notes), so the
    last batch is read to its end.

    :raises ConsumeTimeoutError: the partition did not answer in time.
    """
    consumer = Consumer(consumer_config(bootstrap, eof=True))
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout_s)
        if high <= 0:
            return 0
        end = high
        consumer.assign([TopicPartition(topic, partition, max(low, high - 1))])
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for message in consumer.consume(1000, 0.1):
                err = message.error()
                if err is None:
                    end = max(end, (message.offset() or 0) + 1)
                elif err.code() == ConfluentError._PARTITION_EOF:
                    return end
        msg = f"log_end: {topic}[{partition}] not read to its end within {timeout_s}s"
        raise ConsumeTimeoutError(msg)
    finally:
        consumer.close()


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


@dataclass(frozen=True)
class KafkaRecord:
    """One message read back by :func:`consume_all`; ``timestamp_ms`` is epoch ms or None."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None
    headers: tuple[tuple[str, bytes], ...] = ()


def produce(
    bootstrap: str,
    topic: str,
    items: Iterable[tuple[str | bytes | None, bytes | str]],
    *,
    timeout_s: float = 30.0,
) -> int:
    """Produce ``(key, value)`` pairs to ``topic`` and wait until all are acknowledged.

    Text keys and values are UTF-8 encoded. Returns how many were delivered.

    :raises KafkaDeliveryError: any message was refused or not acknowledged in time.
    """
    producer = Producer(producer_config(bootstrap))
    report = _DeliveryReport()
    count = 0
    for key, value in items:
        raw_key = key.encode() if isinstance(key, str) else key
        raw_value = value.encode() if isinstance(value, str) else value
        _produce(producer, topic, raw_key, raw_value, report)
        producer.poll(0)
        count += 1
    undelivered = producer.flush(timeout_s)
    report.raise_failures(f"produce to {topic!r}", undelivered)
    return count


def consume_all(bootstrap: str, topic: str, timeout: float = 10.0) -> list[KafkaRecord]:
    """Read every message currently in ``topic``, all partitions, from the beginning.

    Uses manual assignment and stops when every partition reported its end.
    Returns the records ordered by partition, then offset.

    :raises ConsumeTimeoutError: not every partition reached its end within ``timeout`` s.
    :raises TopicAdminError: the topic does not exist.
    """
    partitions = list_topics(bootstrap, timeout_s=timeout).get(topic)
    if partitions is None:
        msg = f"consume_all: topic {topic!r} does not exist on {bootstrap}"
        raise TopicAdminError(msg)
    consumer = Consumer(consumer_config(bootstrap, eof=True))
    records: list[KafkaRecord] = []
    pending = set(range(partitions))
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in pending])
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            for message in consumer.consume(1000, 0.1):
                err = message.error()
                if err is None:
                    records.append(_record(message))
                elif err.code() == ConfluentError._PARTITION_EOF:
                    pending.discard(message.partition())
                elif not err.retriable():
                    text = f"consume_all: reading {topic!r}: {err.str()}"
                    raise ConsumeTimeoutError(text)
    finally:
        consumer.close()
    if pending:
        msg = f"consume_all: partitions {sorted(pending)} of {topic!r} not read to the end in {timeout}s"
        raise ConsumeTimeoutError(msg)
    records.sort(key=lambda r: (r.partition, r.offset))
    return records


def _record(msg: Message) -> KafkaRecord:
    kind, epoch_ms = msg.timestamp()
    return KafkaRecord(
        topic=msg.topic() or "",
        partition=msg.partition() or 0,
        offset=msg.offset() or 0,
        key=msg.key(),
        value=msg.value(),
        timestamp_ms=epoch_ms if kind != 0 else None,
        headers=tuple(msg.headers() or ()),
    )
