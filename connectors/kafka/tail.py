"""Follow the newest messages of some topics in a background thread.

For the dashboard: recent signals, rejections and dead letters without
storing them anywhere else. Manual assignment, no consumer group, nothing
committed: on start each partition is read from ``keep`` messages before its
end, then followed. Topics that appear later are picked up (metadata is
re-read every ``refresh_s``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaException, TopicPartition

from connectors.kafka.config import consumer_config

log = logging.getLogger(__name__)

OnMessage = Callable[["TailMessage"], None]


@dataclass(frozen=True)
class TailMessage:
    """One message seen by a :class:`TopicTail`: ``value`` is the decoded JSON (a dict), or None."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    value: dict[str, Any] | None


class TopicTail:
    """Keeps the last ``keep`` messages of each partition of ``topics``.

    ``on_message`` is called (on the tail's thread) for every message read,
    backlog included; it must not block. ``recent(topic)`` is thread-safe.
    """

    def __init__(
        self,
        bootstrap: str,
        topics: Sequence[str],
        *,
        keep: int = 50,
        refresh_s: float = 5.0,
        on_message: OnMessage | None = None,
    ) -> None:
        self._bootstrap = bootstrap
        self._topics = list(topics)
        self._keep = keep
        self._refresh_s = refresh_s
        self._on_message = on_message
        self._lock = threading.Lock()
        self._recent: dict[tuple[str, int], deque[TailMessage]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: str | None = None
        """The last consumer error (``None`` while healthy); for the health view."""

    def start(self) -> TopicTail:
        """Start following in a daemon thread; returns ``self``."""
        self._thread = threading.Thread(target=self._run, name="topic-tail", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread and close the consumer."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def recent(self, topic: str, limit: int | None = None) -> list[TailMessage]:
        """The newest messages of ``topic`` (all partitions), newest first by Kafka timestamp."""
        with self._lock:
            found = [m for (t, _p), kept in self._recent.items() if t == topic for m in kept]
        found.sort(key=lambda m: (m.timestamp_ms or 0, m.partition, m.offset), reverse=True)
        return found[: limit or self._keep]

    def _assign_new(self, consumer: Consumer, assigned: set[tuple[str, int]]) -> None:
        metadata = consumer.list_topics(timeout=5)
        fresh = []
        for topic in self._topics:
            info = metadata.topics.get(topic)
            if info is None or info.error is not None:
                continue
            for partition in info.partitions:
                if (topic, partition) in assigned:
                    continue
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=5)
                fresh.append(TopicPartition(topic, partition, max(low, high - self._keep)))
                assigned.add((topic, partition))
        if fresh:
            consumer.incremental_assign(fresh)

    def _keep_message(self, message: Any) -> None:
        raw = message.value()
        try:
            value = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            value = None
        kind, stamp = message.timestamp()
        seen = TailMessage(
            topic=str(message.topic()),
            partition=int(message.partition() or 0),
            offset=int(message.offset() or 0),
            timestamp_ms=stamp if kind != 0 else None,
            value=value if isinstance(value, dict) else None,
        )
        with self._lock:
            key = (seen.topic, seen.partition)
            if key not in self._recent:
                self._recent[key] = deque(maxlen=self._keep)
            self._recent[key].append(seen)
        if self._on_message is not None:
            self._on_message(seen)

    def _run(self) -> None:
        consumer = Consumer(consumer_config(self._bootstrap))
        assigned: set[tuple[str, int]] = set()
        next_refresh = 0.0
        try:
            while not self._stop.is_set():
                if time.monotonic() >= next_refresh:
                    next_refresh = time.monotonic() + self._refresh_s
                    try:
                        self._assign_new(consumer, assigned)
                        self.error = None
                    except KafkaException as err:
                        self.error = f"Kafka at {self._bootstrap}: {err}"
                        log.warning("topic tail: %s", self.error)
                if not assigned:
                    self._stop.wait(0.2)
                    continue
                for message in consumer.consume(500, 0.2):
                    if message.error() is None:
                        self._keep_message(message)
        finally:
            consumer.close()
