"""Kafka inputs of the live flows: raw messages, raw batches and broker events, counted.

Positions read are recorded for the lag gauge (:data:`dataflows.metrics.INPUT_POSITIONS`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaSourceMessage
from bytewax.dataflow import Dataflow, Stream
from bytewax.inputs import FixedPartitionedSource

from connectors.kafka.offsets import raise_if_offset_lost
from connectors.kafka.source import kafka_source, raw_message
from connectors.merged_source import Also, MergedSource
from dataflows.ingest import decode_events
from dataflows.metrics import INPUT_POSITIONS, MESSAGES_IN, input_counter
from dataflows.params import PipelineParams
from dataflows.runtime.servers import Servers
from dataflows.settings import Settings
from schemas.codec import RawBatch, RawMessage
from schemas.topics import broker_topic

log = logging.getLogger("alpha_panda.dataflows")


def kafka_input(
    flow: Dataflow, step_id: str, servers: Servers, topics: Iterable[str], *, tail: bool = True
) -> Stream[RawMessage]:
    """Read ``topics`` as :class:`RawMessage` items; consumer errors are logged and skipped.

    Except one: a position outside the log (out of range, or a resume past
    the end of a broker that lost data) stops the flow with
    :class:`connectors.errors.OffsetOutOfRangeError`, never a silent jump.
    ``tail=False`` ends the input at the current end of every partition.
    """
    messages, _also = kafka_input_with(flow, step_id, servers, topics, None, tail=tail)
    return messages


def kafka_input_with(
    flow: Dataflow,
    step_id: str,
    servers: Servers,
    topics: Iterable[str],
    also: FixedPartitionedSource[Any, Any] | None,
    *,
    tail: bool = True,
) -> tuple[Stream[RawMessage], Stream[Any] | None]:
    """:func:`kafka_input`, and ``also``'s items (or None): both read in one input step.

    One step, so that the epochs of ``also`` (the strategy table's poll) and
    of the Kafka partitions close together (see :mod:`connectors.merged_source`).
    """
    messages, others = input_step(flow, step_id, kafka_source(servers.kafka, list(topics), tail=tail), also)
    counted: dict[str, Callable[[], None]] = {}

    def keep(message: Any) -> RawMessage | None:
        if isinstance(message, KafkaSourceMessage):
            raw = raw_message(message)
            inc = counted.get(raw.topic)
            if inc is None:
                inc = counted[raw.topic] = input_counter(raw.topic)
            inc()
            INPUT_POSITIONS[(raw.topic, raw.partition or 0)] = raw.offset or 0
            return raw
        raise_if_offset_lost(step_id, message)
        log.warning("Kafka consumer error in %s: %s", step_id, message)
        return None

    return op.filter_map(f"{step_id}_raw", messages, keep), others


def input_step(
    flow: Dataflow,
    step_id: str,
    source: FixedPartitionedSource[Any, Any],
    also: FixedPartitionedSource[Any, Any] | None,
) -> tuple[Stream[Any], Stream[Any] | None]:
    """``source``'s items, and ``also``'s (or None), from one input step."""
    if also is None:
        return op.input(step_id, flow, source), None
    items = op.input(step_id, flow, MergedSource(source, also))
    split = op.branch(f"{step_id}_also", items, _is_also)
    return split.falses, op.map(f"{step_id}_also_items", split.trues, _unwrapped)


def _is_also(item: Any) -> bool:
    return isinstance(item, Also)


def _unwrapped(item: Also) -> Any:
    return item.item


LIVE_BATCH = 4096
"""Most messages one poll of a partition makes into a batch: as many as a replay's batch of tick lines.

A poll takes only what the consumer already holds, so a quiet feed still
comes through at once, in small batches; a backlog comes in full ones, and
the hot path's engine overhead is paid per 4,096 ticks, not per 1,000
(sustained live throughput: 51k -> 58k ticks/s, see ``bench/live-2026-12-04-night.txt``).
"""


def kafka_batches(
    flow: Dataflow,
    step_id: str,
    servers: Servers,
    topics: Iterable[str],
    *,
    tail: bool = True,
    also: FixedPartitionedSource[Any, Any] | None = None,
) -> tuple[Stream[RawBatch], Stream[Any] | None]:
    """Read ``topics`` as one :class:`RawBatch` per poll of a partition (at most :data:`LIVE_BATCH`).

    Consumer errors are logged. Counts messages in (``alpha_panda_messages_in``)
    and records read positions for the lag gauge, once per batch. ``also``'s
    items (or None) come second, read in the same input step, as in
    :func:`kafka_input_with`.
    """
    source = kafka_source(servers.kafka, list(topics), tail=tail, batched=True, batch_size=LIVE_BATCH)
    batches, others = input_step(flow, step_id, source, also)
    counters: dict[str, Any] = {}

    def count(batch: RawBatch) -> RawBatch:
        counter = counters.get(batch.topic)
        if counter is None:
            counter = counters[batch.topic] = MESSAGES_IN.labels(batch.topic)
        counter.inc(len(batch.values))
        if batch.offsets:  # one poll of one partition
            INPUT_POSITIONS[(batch.topic, batch.partition or 0)] = batch.offsets[-1]
        return batch

    return op.map(f"{step_id}_counted", batches, count), others


def broker_events(
    flow: Dataflow,
    step_id: str,
    servers: Servers,
    settings: Settings,
    params: PipelineParams,
    stage: str,
    expected: type[Any],
) -> tuple[Stream[Any], Stream[Any]]:
    """Read ``<broker>.<stage>`` of every active broker; return (envelopes, dead letters).

    Undecodable messages become dead letters for ``<broker>.<stage>.dlq``;
    an event with the ``ap-tick-created-ms`` header comes out
    :class:`dataflows.tick_time.Stamped` (see :func:`dataflows.ingest.decode_events`).
    """
    topics = [broker_topic(broker, stage) for broker in params.brokers]
    raw = kafka_input(flow, step_id, servers, topics, tail=settings.kafka_tail)
    return decode_events(f"{step_id}_in", raw, expected, service=params.service, stamp_tick_created=True)
