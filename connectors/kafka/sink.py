"""The bytewax sink writing :class:`schemas.envelope.Outbound` items to their own topics."""

from __future__ import annotations

import zlib
from typing import Any, Final

from bytewax.outputs import DynamicSink, StatelessSinkPartition
from confluent_kafka import KafkaException, Producer

from connectors.errors import SinkInputError
from connectors.kafka.config import producer_config
from connectors.kafka.delivery import DeliveryReport, produce_message
from schemas.codec import encode
from schemas.envelope import Outbound, Published, messages_of

_SINK_STEP: Final = "kafka_sink"


class _OutboundKafkaPartition(StatelessSinkPartition[Published]):
    """Produces one batch of :class:`Outbound` items (or lists of them), then flushes once."""

    def __init__(self, producer: Producer, flush_timeout_s: float, metadata_timeout_s: float = 10.0) -> None:
        self._producer = producer
        self._flush_timeout_s = flush_timeout_s
        self._partitions: dict[str, int] = {}
        try:  # every topic's partition count in one request, so a first message never waits for one
            metadata = producer.list_topics(timeout=metadata_timeout_s)
        except KafkaException:
            return  # asked per topic on first use instead
        for name, topic in metadata.topics.items():
            if topic.error is None and topic.partitions:
                self._partitions[name] = len(topic.partitions)

    def _partition(self, topic: str, partition_key: str | None) -> int:
        """The partition of ``partition_key`` (crc32 mod partition count), or -1."""
        if partition_key is None:
            return -1
        count = self._partitions.get(topic)
        if count is None:
            metadata = self._producer.list_topics(topic, timeout=10)
            count = self._partitions[topic] = len(metadata.topics[topic].partitions) or 1
        return zlib.crc32(partition_key.encode("utf-8")) % count

    def write_batch(self, items: list[Published]) -> None:
        """Produce every message, wait for all acknowledgements, raise if any failed."""
        report = DeliveryReport()
        produce = self._producer.produce
        for item in messages_of(items):
            if not isinstance(item, Outbound):
                raise SinkInputError(_SINK_STEP, "Outbound", item)
            topic = item.topic
            partition = self._partition(topic, item.partition_key)
            value = encode(item.envelope)
            if item.headers is None:
                try:  # the common case, in line: no call per message but librdkafka's
                    produce(topic, value, item.key.encode(), partition, report)
                    continue
                except BufferError:
                    pass  # the local queue is full: produce_message waits for room
            produce_message(self._producer, topic, item.key.encode(), value, report, partition, item.headers)
        undelivered = self._producer.flush(self._flush_timeout_s)
        report.raise_failures("kafka_sink", undelivered)

    def close(self) -> None:
        """Deliver anything still queued before the worker stops."""
        self._producer.flush(self._flush_timeout_s)


class OutboundKafkaSink(DynamicSink[Published]):
    """A bytewax sink writing :class:`Outbound` items to their own topics.

    In: ``Outbound(topic, key, envelope)`` items, or lists of them. Out: a Kafka message on ``topic``
    with key ``key`` (UTF-8), value ``schemas.codec.encode(envelope)`` and
    the item's ``headers``, if any.
    Each worker owns one idempotent producer; a batch is acknowledged as a
    whole before the next one starts (at-least-once with bytewax recovery).

    Raises:
        KafkaDeliveryError: from ``write_batch`` when the broker did not
            acknowledge a message within ``delivery.timeout.ms``.
    """

    def __init__(self, bootstrap: str, add_config: dict[str, Any] | None = None) -> None:
        self._config = {**producer_config(bootstrap), **(add_config or {})}
        self._flush_timeout_s = self._config["delivery.timeout.ms"] / 1000 + 5
        # No message can wait longer than the delivery timeout, so neither does the
        # optional up-front metadata request (10 s at most, as before).
        self._metadata_timeout_s = min(10.0, self._config["delivery.timeout.ms"] / 1000)

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _OutboundKafkaPartition:
        """Build this worker's producer."""
        # Delivery reports of failures only: a success costs no Python callback (flush still waits for it).
        config = {
            **self._config,
            "client.id": f"alpha-panda-{step_id}-{worker_index}",
            "delivery.report.only.error": True,
        }
        return _OutboundKafkaPartition(Producer(config), self._flush_timeout_s, self._metadata_timeout_s)


def kafka_sink(bootstrap: str, add_config: dict[str, Any] | None = None) -> OutboundKafkaSink:
    """Return the bytewax sink for :class:`Outbound` items; see :class:`OutboundKafkaSink`."""
    return OutboundKafkaSink(bootstrap, add_config)
