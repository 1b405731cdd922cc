"""Producing with delivery reports: queue a message, then check every acknowledgement."""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaError as ConfluentError
from confluent_kafka import Message, Producer

from connectors.errors import KafkaDeliveryError


class DeliveryReport:
    """Collects librdkafka delivery callbacks of one flush round (pass it as ``on_delivery``)."""

    def __init__(self) -> None:
        self.failures: list[str] = []

    def __call__(self, err: ConfluentError | None, msg: Message) -> None:
        """Record ``msg`` as a failure when librdkafka reports ``err``."""
        if err is not None:
            self.failures.append(f"{msg.topic()} key={msg.key()!r}: {err.str()}")

    def raise_failures(self, step: str, undelivered: int) -> None:
        """Raise if ``undelivered`` messages are still queued or any delivery failed.

        Raises:
            KafkaDeliveryError: named after ``step``, with up to three failures.
        """
        if undelivered:
            msg = f"{step}: {undelivered} message(s) still unacknowledged after the flush timeout"
            raise KafkaDeliveryError(msg)
        if self.failures:
            shown = "; ".join(self.failures[:3])
            msg = f"{step}: {len(self.failures)} message(s) not delivered: {shown}"
            raise KafkaDeliveryError(msg)


def produce_message(
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
