"""Dead letters on Kafka: sinks that retry then dead-letter, and DLQ read/replay I/O.

A sink write goes through a :class:`SinkGuard`: the write is retried per
:mod:`operators.failures` (classified with the connector's own rules); when
the policy gives up, every message of the batch is written to the DLQ of the
topic it belongs to (``<topic>.dlq``) as a ``dlq_record`` naming the error
class and the retries made, and the flow goes on. Poison and authentication
failures are dead-lettered at once. Only if the dead letters themselves
cannot be delivered does the write raise (Bytewax recovery then resumes).

Replay: :func:`read_dead_letters` reads a DLQ topic; :func:`republish` puts
original messages back on their topic with the :data:`REPLAY_HEADER` header.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from confluent_kafka import Producer

from connectors.errors import ConnectorError
from connectors.kafka.config import producer_config
from connectors.kafka.delivery import DeliveryReport
from connectors.kafka.records import KafkaRecord, consume_all
from operators.failures import (
    Failure,
    RetryConfig,
    RetryExhaustedError,
    RetryLogic,
    Rules,
    retry_call,
)
from schemas.codec import dead_letter, encode
from schemas.envelope import Outbound
from schemas.errors import DecodeError
from schemas.topics import dlq_topic, topic_broker

log = logging.getLogger(__name__)

REPLAY_HEADER: Final = "alpha-panda-replayed-from"
"""Header on a republished message: ``<dlq topic>:<partition>:<offset>`` of its dead letter."""

OnRetry = Callable[[str], None]
"""Told the error class of every retried failure (a metrics hook)."""
OnDeadLetter = Callable[[str, str, str], None]
"""Told ``(original topic, broker, error class)`` of every dead letter written."""


Outgoing = tuple[str, bytes | None, bytes, list[tuple[str, str | bytes | None]] | None, int]
"""A message to produce: ``(topic, key, value, headers, partition)``; partition -1: by key."""


def _noop(*_args: object) -> None:
    return None


class DeadLetterError(ConnectorError):
    """Dead letters could not be delivered to Kafka; the batch is neither stored nor parked."""


class DeadLetterProducer:
    """Writes dead letters (and replays) with one idempotent producer, created on first use."""

    def __init__(self, bootstrap: str, client_id: str = "alpha-panda-dlq") -> None:
        self._config = {**producer_config(bootstrap), "client.id": client_id}
        self._producer: Producer | None = None

    def send(self, messages: Iterable[Outgoing]) -> int:
        """Produce :data:`Outgoing` messages; wait for every acknowledgement.

        Returns how many were delivered.

        Raises:
            DeadLetterError: a message was refused or not acknowledged in time.
        """
        if self._producer is None:
            self._producer = Producer(self._config)
        report = DeliveryReport()
        count = 0
        for topic, key, value, headers, partition in messages:
            while True:
                try:
                    self._producer.produce(
                        topic, value=value, key=key, headers=headers, partition=partition, on_delivery=report
                    )
                except BufferError:
                    self._producer.poll(0.05)
                else:
                    break
            count += 1
        undelivered = self._producer.flush(self._config["delivery.timeout.ms"] / 1000 + 5)
        try:
            report.raise_failures("dead letters", undelivered)
        except ConnectorError as err:
            raise DeadLetterError(str(err)) from err
        return count

    def close(self) -> None:
        """Deliver anything still queued."""
        if self._producer is not None:
            self._producer.flush(10)


@dataclass(frozen=True)
class Resilience:
    """How a sink rides out failures: retries, then dead letters on Kafka.

    ``kafka`` is where dead letters go; ``None`` means no DLQ: the sink
    raises once retries are exhausted (the flow stops; recovery resumes).
    ``seed`` seeds the backoff jitter (per worker: seed + worker index).
    ``on_retry`` / ``on_dead_letter`` are metric hooks; ``sleep`` is injected.
    """

    retry: RetryConfig = field(default_factory=RetryConfig.from_settings)
    kafka: str | None = None
    service: str = "alpha-panda"
    seed: int | None = None
    on_retry: OnRetry = _noop
    on_dead_letter: OnDeadLetter = _noop
    sleep: Callable[[float], None] = time.sleep

    def guard(self, step: str, rules: Rules, worker_index: int = 0) -> SinkGuard:
        """A guard for one sink partition."""
        return SinkGuard(step, self, rules, worker_index)


class SinkGuard:
    """Runs one batch write with retries; dead-letters the batch when they run out."""

    def __init__(self, step: str, resilience: Resilience, rules: Rules, worker_index: int = 0) -> None:
        self._step = step
        self._resilience = resilience
        self._rules = rules
        seed = None if resilience.seed is None else resilience.seed + worker_index
        self._logic = RetryLogic(resilience.retry, random.Random(seed))  # noqa: S311 - jitter, not crypto
        self._dlq = (
            DeadLetterProducer(resilience.kafka, f"alpha-panda-{step}-dlq-{worker_index}")
            if resilience.kafka
            else None
        )

    def _retrying(self, failure: Failure, delay: float) -> None:
        self._resilience.on_retry(failure.error_class)
        log.warning(
            "%s: %s (%s), retry %d in %.2f s: %s",
            self._step,
            failure.error_name,
            failure.error_class,
            failure.attempts,
            delay,
            failure.error,
        )

    def write(self, items: list[Outbound], work: Callable[[], object]) -> int:
        """Run ``work`` (the batch write of ``items``) with retries.

        Returns 0 when it succeeded, else the number of dead letters written.

        Raises:
            RetryExhaustedError: retries ran out and there is no DLQ.
            DeadLetterError: the dead letters could not be delivered.
        """
        try:
            retry_call(
                self._step,
                work,
                self._logic,
                rules=self._rules,
                sleep=self._resilience.sleep,
                on_retry=self._retrying,
            )
        except RetryExhaustedError as err:
            if self._dlq is None:
                raise
            return self._dead_letter(items, err.failure)
        return 0

    def _dead_letter(self, items: list[Outbound], failure: Failure) -> int:
        now = datetime.now(UTC)
        letters = []
        for item in items:
            letter = dead_letter(
                topic=item.topic,
                key=item.key,
                value=encode(item.envelope),
                error_type=failure.error_class,
                error_class=failure.error_name,
                error_message=f"{self._step}: {failure.error}",
                service_name=self._resilience.service,
                dlq_timestamp=now,
                retry_count=failure.retry_count,
                broker=topic_broker(item.topic),
            )
            letters.append((dlq_topic(item.topic), item.key.encode(), encode(letter), None, -1))
        assert self._dlq is not None  # noqa: S101 - checked by the caller
        self._dlq.send(letters)
        for item in items:
            self._resilience.on_dead_letter(item.topic, topic_broker(item.topic), failure.error_class)
        log.error(
            "%s: gave up after %d attempt(s) (%s: %s); %d message(s) dead-lettered",
            self._step,
            failure.attempts,
            failure.error_class,
            failure.error_name,
            len(items),
        )
        return len(items)

    def close(self) -> None:
        """Deliver queued dead letters."""
        if self._dlq is not None:
            self._dlq.close()


# --- reading and republishing dead letters --------------------------------------------


@dataclass(frozen=True)
class DeadLetterRecord:
    """One message of a DLQ topic, decoded when possible.

    ``envelope`` is the ``dlq_record`` envelope, or ``None`` when the
    message is not one (``problem`` then says why).
    """

    record: KafkaRecord
    envelope: Any
    problem: str | None = None


def read_dead_letters(bootstrap: str, topic: str, timeout_s: float = 30.0) -> list[DeadLetterRecord]:
    """Read every message of DLQ ``topic`` (all partitions, from the beginning).

    Raises:
        TopicAdminError: the topic does not exist.
        ConsumeTimeoutError: it could not be read to its end in time.
    """
    from schemas.codec import decode  # keep the module import light
    from schemas.envelope import DlqEnvelope

    out = []
    for record in consume_all(bootstrap, topic, timeout_s):
        try:
            envelope = decode(record.value or b"", topic)
        except DecodeError as err:
            out.append(DeadLetterRecord(record, None, err.reason))
            continue
        if not isinstance(envelope, DlqEnvelope):
            out.append(DeadLetterRecord(record, None, f"not a dlq_record but {type(envelope).__name__}"))
            continue
        out.append(DeadLetterRecord(record, envelope))
    return out
