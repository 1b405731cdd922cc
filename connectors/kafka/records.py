"""Produce a list of messages and read a whole topic back: for tools, replays and tests."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition
from confluent_kafka import KafkaError as ConfluentError

from connectors.errors import ConsumeTimeoutError, TopicAdminError
from connectors.kafka.admin import list_topics
from connectors.kafka.config import consumer_config, producer_config
from connectors.kafka.delivery import DeliveryReport, produce_message
from connectors.kafka.offsets import log_start


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
    producer: Producer | None = None,
) -> int:
    """Produce ``(key, value)`` pairs to ``topic`` and wait until all are acknowledged.

    Text keys and values are UTF-8 encoded. Returns how many were delivered.
    ``producer`` (built from :func:`producer_config`) is reused when given:
    a new idempotent producer spends ~0.5 s acquiring its producer id before
    its first delivery, which a caller producing many small batches pays once.

    Raises:
        KafkaDeliveryError: any message was refused or not acknowledged in time.
    """
    if producer is None:  # not ``or``: a Producer's truth is its queue length
        producer = Producer(producer_config(bootstrap))
    report = DeliveryReport()
    count = 0
    for key, value in items:
        raw_key = key.encode() if isinstance(key, str) else key
        raw_value = value.encode() if isinstance(value, str) else value
        produce_message(producer, topic, raw_key, raw_value, report)
        producer.poll(0)
        count += 1
    undelivered = producer.flush(timeout_s)
    report.raise_failures(f"produce to {topic!r}", undelivered)
    return count


def consume_all(bootstrap: str, topic: str, timeout: float = 10.0) -> list[KafkaRecord]:
    """Read every message currently in ``topic``, all partitions, from the beginning.

    Uses manual assignment and stops when every partition reported its end.
    Returns the records ordered by partition, then offset.

    Raises:
        ConsumeTimeoutError: not every partition reached its end within ``timeout`` s.
        TopicAdminError: the topic does not exist.
    """
    partitions = list_topics(bootstrap, timeout_s=timeout).get(topic)
    if partitions is None:
        msg = f"consume_all: topic {topic!r} does not exist on {bootstrap}"
        raise TopicAdminError(msg)
    consumer = Consumer(consumer_config(bootstrap, eof=True))
    records: list[KafkaRecord] = []
    pending = set(range(partitions))
    try:
        deadline = time.monotonic() + timeout
        consumer.assign(_log_starts(consumer, topic, sorted(pending), deadline))
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


def _log_starts(
    consumer: Consumer, topic: str, partitions: list[int], deadline: float
) -> list[TopicPartition]:
    """Each partition of ``topic`` at its first offset (:func:`log_start`), before assigning.

    Raises:
        ConsumeTimeoutError: a partition's first offset was not known by ``deadline``.
    """
    starts = []
    for partition in partitions:
        remaining = max(deadline - time.monotonic(), 0.1)
        try:
            low = log_start(consumer, topic, partition, remaining)
        except KafkaException as exc:
            msg = f"consume_all: the first offset of {topic}[{partition}] is unknown: {exc}"
            raise ConsumeTimeoutError(msg) from exc
        starts.append(TopicPartition(topic, partition, low))
    return starts


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
