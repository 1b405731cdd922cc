"""Kafka connectors against a real Kafka-API broker."""

from __future__ import annotations

import pytest
from bytewax import operators as op
from bytewax.connectors.kafka import KafkaSourceMessage
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, cluster_main, run_main
from msgspec.structs import replace

from connectors.errors import ConsumeTimeoutError, KafkaDeliveryError, TopicAdminError
from connectors.kafka.admin import create_pipeline_topics, create_topics, list_topics
from connectors.kafka.records import consume_all, produce
from connectors.kafka.sink import kafka_sink
from connectors.kafka.source import kafka_source, raw_message
from schemas.codec import decode
from schemas.headers import TICK_CREATED, tick_created_headers, tick_created_ms
from schemas.topics import BROKERS, all_topics, is_dlq
from tests.integration.builders import filled_out, pnl_out, tick_out

pytestmark = pytest.mark.integration


def test_pipeline_topics_are_created_once_for_both_brokers(kafka_bootstrap: str) -> None:
    expected = all_topics(BROKERS)
    assert len(expected) == 30  # market.ticks + 2 brokers x 7 stages, each with a DLQ
    assert sum(is_dlq(t) for t in expected) == 15

    create_pipeline_topics(kafka_bootstrap, BROKERS, partitions=3, retention_ms=3_600_000)
    again = create_pipeline_topics(kafka_bootstrap, BROKERS, partitions=3, retention_ms=3_600_000)

    assert again == []
    present = list_topics(kafka_bootstrap)
    assert set(expected) <= set(present)
    assert {present[t] for t in expected} == {3}


def test_create_topics_reports_what_it_created(kafka_bootstrap: str, unique: str) -> None:
    names = [f"it.{unique}.a", f"it.{unique}.b"]
    assert sorted(create_topics(kafka_bootstrap, names, 2, 60_000)) == names
    assert create_topics(kafka_bootstrap, [*names, f"it.{unique}.c"], 2, 60_000) == [f"it.{unique}.c"]


def _sink_flow(items: list, bootstrap: str) -> Dataflow:
    flow = Dataflow("kafka_sink_round_trip")
    stream = op.input("in", flow, TestingSource(items, batch_size=4))
    op.output("kafka", stream, kafka_sink(bootstrap))
    return flow


@pytest.mark.parametrize("workers", [1, 2])
def test_kafka_sink_round_trip_through_bytewax(kafka_bootstrap: str, unique: str, workers: int) -> None:
    ticks_topic, fills_topic = f"it.{unique}.ticks", f"it.{unique}.fills"
    create_topics(kafka_bootstrap, [ticks_topic, fills_topic], 3, 60_000)
    ticks = [
        replace(tick_out(token, 100.0 + i, i), topic=ticks_topic) for i, token in enumerate([1, 2, 3] * 5)
    ]
    fills = [replace(filled_out("paper", "mom_1", f"o-{i}"), topic=fills_topic) for i in range(6)]
    flow = _sink_flow(ticks + fills, kafka_bootstrap)

    if workers == 1:
        run_main(flow)
    else:
        cluster_main(flow, [], 0, worker_count_per_proc=workers)

    for topic, sent in ((ticks_topic, ticks), (fills_topic, fills)):
        records = consume_all(kafka_bootstrap, topic, timeout=10)
        got = {(r.key.decode(), decode(r.value, topic)) for r in records}
        assert got == {(o.key, o.envelope) for o in sent}
        # One key always lands on one partition, so an account's events stay ordered.
        partitions_of_key: dict[bytes, set[int]] = {}
        for r in records:
            partitions_of_key.setdefault(r.key, set()).add(r.partition)
        assert all(len(parts) == 1 for parts in partitions_of_key.values())


def test_kafka_source_yields_messages_with_their_coordinates(kafka_bootstrap: str, unique: str) -> None:
    topic = f"it.{unique}.snapshots"
    create_topics(kafka_bootstrap, [topic], 2, 60_000)
    sent = [replace(pnl_out("paper", f"s{i % 3}", 1_000_000.0 - i, i), topic=topic) for i in range(9)]
    run_main(_sink_flow(sent, kafka_bootstrap))

    read = Dataflow("kafka_source")
    out: list = []
    stream = op.input("kafka", read, kafka_source(kafka_bootstrap, [topic], tail=False))
    op.output("out", stream, TestingSink(out))
    run_main(read)

    assert len(out) == len(sent)
    assert all(isinstance(m, KafkaSourceMessage) for m in out)
    offsets = sorted((m.partition, m.offset) for m in out)
    assert len(set(offsets)) == len(sent)
    raws = [raw_message(m) for m in out]
    assert {r.topic for r in raws} == {topic}
    assert all(r.timestamp is not None for r in raws)
    assert {decode(r.value, topic).id for r in raws} == {o.envelope.id for o in sent}
    assert {r.headers for r in raws} == {None}  # produced without headers: none come back


def test_headers_of_an_outbound_go_with_the_record_and_read_back(kafka_bootstrap: str, unique: str) -> None:
    topic = f"it.{unique}.stamped"
    create_topics(kafka_bootstrap, [topic], 2, 60_000)
    snapshots = [pnl_out("paper", f"s{i}", 1_000_000.0, i) for i in range(4)]
    stamped = [
        replace(o, topic=topic, headers=tick_created_headers(1000 + i)) for i, o in enumerate(snapshots)
    ]
    bare = [replace(pnl_out("paper", "s9", 1_000_000.0, 9), topic=topic)]
    run_main(_sink_flow(stamped + bare, kafka_bootstrap))

    records = consume_all(kafka_bootstrap, topic, timeout=10)
    by_id = {decode(r.value, topic).id: r.headers for r in records}
    assert by_id == {
        **{o.envelope.id: ((TICK_CREATED, str(1000 + i).encode()),) for i, o in enumerate(stamped)},
        bare[0].envelope.id: (),
    }
    read = Dataflow("kafka_source_headers")
    out: list = []
    op.output(
        "out", op.input("kafka", read, kafka_source(kafka_bootstrap, [topic], tail=False)), TestingSink(out)
    )
    run_main(read)
    raws = {decode(r.value, topic).id: r for r in map(raw_message, out)}
    assert {ident: tick_created_ms(topic, r.headers) for ident, r in raws.items()} == {
        **{o.envelope.id: 1000 + i for i, o in enumerate(stamped)},
        bare[0].envelope.id: None,
    }


def test_produce_and_consume_all_helpers(kafka_bootstrap: str, unique: str) -> None:
    topic = f"it.{unique}.raw"
    create_topics(kafka_bootstrap, [topic], 4, 60_000)
    assert produce(kafka_bootstrap, topic, [(str(i), f'{{"n": {i}}}') for i in range(50)]) == 50
    produce(kafka_bootstrap, topic, [(None, b"\xff not json")])

    records = consume_all(kafka_bootstrap, topic, timeout=10)

    assert len(records) == 51
    assert {r.value for r in records} >= {b'{"n": 7}', b"\xff not json"}
    assert all(r.timestamp_ms is not None for r in records)


def test_consume_all_of_missing_topic_is_a_typed_error(kafka_bootstrap: str, unique: str) -> None:
    with pytest.raises(TopicAdminError, match="does not exist"):
        consume_all(kafka_bootstrap, f"it.{unique}.missing", timeout=2)


def test_consume_all_times_out_with_a_typed_error() -> None:
    with pytest.raises((ConsumeTimeoutError, TopicAdminError)):
        consume_all("127.0.0.1:1", "nowhere", timeout=0.5)


def test_sink_raises_a_typed_error_when_the_broker_is_gone() -> None:
    flow = Dataflow("kafka_sink_unreachable")
    stream = op.input("in", flow, TestingSource([tick_out(1, 100.0)]))
    op.output("kafka", stream, kafka_sink("127.0.0.1:1", {"delivery.timeout.ms": 300}))
    with pytest.raises(Exception) as caught:  # bytewax wraps the sink's error
        run_main(flow)
    assert _chain_has(caught.value, KafkaDeliveryError)


def _chain_has(err: BaseException | None, kind: type) -> bool:
    while err is not None:
        if isinstance(err, kind) or kind.__name__ in str(err):
            return True
        err = err.__cause__ or err.__context__
    return False
