"""A position outside the log stops a flow with a named error; it never skips (auto.offset.reset)."""

from __future__ import annotations

import pickle
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from bytewax.connectors.kafka import KafkaError as SourceError
from bytewax.connectors.kafka import KafkaSourceMessage
from confluent_kafka import KafkaError

from alpha_panda import orchestration
from connectors.errors import OffsetOutOfRangeError
from connectors.kafka.admin import create_pipeline_topics, create_topics
from connectors.kafka.config import consumer_config
from connectors.kafka.offsets import log_end, raise_if_offset_lost
from connectors.kafka.records import produce
from connectors.kafka.source import IDLE_POLL, kafka_source
from connectors.localstack import KAFKA
from schemas.topics import MARKET_TICKS
from tests.integration.live_world import World, live_world, simulated_ticks, wait_until

pytestmark = pytest.mark.integration


def _batches(part: object, seconds: float) -> list:
    found: list = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found += part.next_batch()  # type: ignore[attr-defined]
        time.sleep(0.05)
    return found


def test_log_end_is_exact(kafka_bootstrap: str, unique: str) -> None:
    topic = f"ends-{unique}"
    create_topics(kafka_bootstrap, [topic], 1, 3_600_000)
    assert log_end(kafka_bootstrap, topic, 0) == 0
    for size in (3, 1, 4):  # separate batches: Tansu's watermark stops at the last batch's base
        produce(kafka_bootstrap, topic, [(b"k", b"v")] * size)
    assert log_end(kafka_bootstrap, topic, 0) == 8


def test_a_resume_past_the_log_end_is_refused_by_name(kafka_bootstrap: str, unique: str) -> None:
    topic = f"resume-{unique}"
    create_topics(kafka_bootstrap, [topic], 1, 3_600_000)
    produce(kafka_bootstrap, topic, [(b"k", b"v%d" % i) for i in range(5)])
    source = kafka_source(kafka_bootstrap, [topic])
    with pytest.raises(
        OffsetOutOfRangeError, match=rf"{topic}\[0\] resumes at offset 7 but the log ends at 5"
    ):
        source.build_part("in", f"0-{topic}", 7)

    at_end = source.build_part("in", f"0-{topic}", 5)  # exactly at the end: fine, waits
    produce(kafka_bootstrap, topic, [(b"k", b"new")])
    got = [m for m in _batches(at_end, 2.0) if isinstance(m, KafkaSourceMessage)]
    at_end.close()
    assert [(m.offset, m.value) for m in got] == [(5, b"new")]


def test_a_batching_partition_never_blocks_and_sleeps_after_an_empty_poll(
    kafka_bootstrap: str, unique: str
) -> None:
    topic = f"idle-{unique}"
    create_topics(kafka_bootstrap, [topic], 1, 3_600_000)
    part = kafka_source(kafka_bootstrap, [topic], batched=True).build_part("in", f"0-{topic}", None)
    try:
        before = datetime.now(UTC)
        assert part.next_batch() == []
        awake = part.next_awake()
        assert awake is not None
        assert before + IDLE_POLL <= awake <= datetime.now(UTC) + IDLE_POLL

        produce(kafka_bootstrap, topic, [(b"k", b"v0"), (b"k", b"v1")])
        got: list = []
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            got = part.next_batch()
        (batch,) = got
        assert (batch.values, batch.offsets) == ([b"v0", b"v1"], [0, 1])
        assert part.next_awake() is None  # data came: poll again at once
        assert part.snapshot() == 2
    finally:
        part.close()


def test_consumers_never_reset_their_position() -> None:
    assert consumer_config("127.0.0.1:9092")["auto.offset.reset"] == "error"


def test_an_offset_error_stops_the_input_and_other_errors_do_not() -> None:
    message = KafkaSourceMessage(key=None, value=None, topic="market.ticks", partition=2, offset=41)
    with pytest.raises(
        OffsetOutOfRangeError, match=r"market_ticks: the position of market.ticks\[2\] \(offset 41\)"
    ):
        raise_if_offset_lost("market_ticks", SourceError(KafkaError(KafkaError._AUTO_OFFSET_RESET), message))
    with pytest.raises(OffsetOutOfRangeError):
        raise_if_offset_lost("market_ticks", SourceError(KafkaError(KafkaError.OFFSET_OUT_OF_RANGE), message))
    raise_if_offset_lost(
        "market_ticks", SourceError(KafkaError(KafkaError._TRANSPORT), message)
    )  # logged only


def test_a_flow_resuming_past_a_lost_log_stops_loudly(redis_url: str, postgres_url: str) -> None:
    with live_world(redis_url, postgres_url) as world:
        _scenario(world)


def _resume_offset(directory: Path) -> int | None:
    """The market.ticks position a restart would resume from: its snapshot in the committed epoch."""
    part = directory / "part-0.sqlite3"
    if not part.exists():
        return None
    with sqlite3.connect(f"file:{part}?mode=ro", uri=True) as db:
        (committed,) = db.execute("SELECT MIN(commit_epoch) FROM commits").fetchone()
        if committed is None:
            return None
        row = db.execute(
            "SELECT ser_change FROM snaps WHERE state_key = ? AND snap_epoch <= ?"
            " ORDER BY snap_epoch DESC LIMIT 1",
            (f"0-{MARKET_TICKS}", committed),
        ).fetchone()
    return pickle.loads(row[0]) if row and row[0] is not None else None


def _scenario(world: World) -> None:
    world.seed()
    world.produce_ticks(simulated_ticks(instruments=2, ticks=100, seed=3))
    orchestration.start_dataflow(world.stack, "pipeline", world.urls, snapshot_s=1)
    directory = orchestration.recovery_dir(world.stack, "pipeline")

    wait_until(
        lambda: _resume_offset(directory) == 200, 60, "a committed snapshot at the end of market.ticks"
    )
    world.stack.stop_process("pipeline")

    world.stack.restart_server(KAFKA)  # Tansu keeps topics in memory: it comes back empty
    create_topics(world.urls.kafka, [MARKET_TICKS], partitions=1, retention_ms=3_600_000)
    create_pipeline_topics(world.urls.kafka, partitions=4, retention_ms=3_600_000)
    world.produce_ticks(simulated_ticks(instruments=2, ticks=1, seed=3))
    orchestration.start_dataflow(world.stack, "pipeline", world.urls, snapshot_s=1)
    wait_until(lambda: world.stack.process("pipeline") is None, 60, "the pipeline to stop")
    log = world.stack.log_path("pipeline").read_text(errors="replace")
    assert "OffsetOutOfRangeError" in log
    assert "market.ticks[0] resumes at offset 200 but the log ends at 2" in log
    assert not world.topic("paper.orders.filled"), "nothing was processed from a skipped position"
