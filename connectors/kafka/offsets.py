"""Offset checks: stop rather than skip when a position is outside the log."""

from __future__ import annotations

import time
from typing import Any, Final

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka import KafkaError as ConfluentError

from connectors.errors import ConsumeTimeoutError, OffsetOutOfRangeError
from connectors.kafka.config import consumer_config

_OFFSET_LOST: Final = frozenset({ConfluentError._AUTO_OFFSET_RESET, ConfluentError.OFFSET_OUT_OF_RANGE})


def raise_if_offset_lost(step_id: str, item: Any) -> None:
    """Stop on a consumer error meaning its position is outside the log; ignore other items.

    ``item`` is what a :func:`kafka_source` emits: a message, or an error
    item carrying a confluent ``KafkaError`` as ``err``.

    Raises:
        OffsetOutOfRangeError: the error is ``OFFSET_OUT_OF_RANGE`` or
            ``_AUTO_OFFSET_RESET`` (raised instead of a reset, see consumer_config).
    """
    err = getattr(item, "err", None)
    if err is None:
        return
    where = getattr(item, "msg", None)
    raise_if_position_lost(
        step_id,
        err,
        getattr(where, "topic", None),
        getattr(where, "partition", None),
        getattr(where, "offset", None),
    )


def raise_if_position_lost(step_id: str, err: Any, topic: Any, partition: Any, offset: Any) -> None:
    """:func:`raise_if_offset_lost` for a confluent ``KafkaError`` read at ``topic[partition]``, ``offset``.

    Raises:
        OffsetOutOfRangeError: ``err`` is ``OFFSET_OUT_OF_RANGE`` or ``_AUTO_OFFSET_RESET``.
    """
    if err.code() not in _OFFSET_LOST:
        return
    msg = (
        f"{step_id}: the position of {topic}[{partition}] (offset {offset}) is not in the log "
        f"({err.name()}); refusing to skip to another offset"
    )
    raise OffsetOutOfRangeError(msg)


def log_start(consumer: Consumer, topic: str, partition: int, timeout_s: float) -> int:
    """The first offset of ``topic[partition]``, asked of the broker (its low watermark).

    The answer ``OFFSET_BEGINNING`` resolves to, asked directly: assigned a
    logical offset before the partition's leader is connected, librdkafka
    retries the lookup on a fixed 500 ms timer.

    Raises:
        KafkaException: the broker did not answer within ``timeout_s``.
    """
    low, _high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout_s)
    return int(low)


def log_end(bootstrap: str, topic: str, partition: int, timeout_s: float = 10.0) -> int:
    """The exact offset after the last message of ``topic[partition]`` (0 when empty).

    Tansu's high watermark can understate it (see :mod:`connectors.kafka`), so the
    last batch is read to its end.

    Raises:
        ConsumeTimeoutError: the partition did not answer in time.
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
