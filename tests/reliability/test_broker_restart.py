"""A real broker restart: Tansu SIGKILLed mid-stream and started again on its S3 storage.

The pipeline rides the outage out or stops loudly and is restarted from
recovery, as an orchestrator would. Either way the topics survive the
restart, and the ledger and the portfolios end equal to an uninterrupted
replay of the same ticks, with no duplicate ledger rows.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from alpha_panda import orchestration
from connectors.kafka.records import consume_all
from schemas.topics import MARKET_TICKS
from tests.integration.live_world import World, live_world, simulated_ticks, wait_until
from tests.integration.test_live_pipeline import replay_reference, without_time
from tests.reliability.conftest import log_text
from tests.reliability.s3_broker import S3Broker, s3_broker
from tests.reliability.test_outages import ledger_duplicates

pytestmark = pytest.mark.integration

DELIVERY_TIMEOUT_MS = 5_000


@pytest.fixture
def broker_world(redis_url: str, postgres_url: str, tmp_path: Path) -> Iterator[tuple[World, S3Broker]]:
    with (
        s3_broker(tmp_path / "tansu-s3.log") as broker,
        live_world(redis_url, postgres_url, broker.url) as world,
    ):
        yield world, broker


def test_a_broker_restart_on_s3_storage_loses_and_doubles_nothing(
    broker_world: tuple[World, S3Broker], tmp_path: Path
) -> None:
    world, broker = broker_world
    rows = world.seed()
    lines = simulated_ticks(ticks=400, seed=61)
    fills, reference = replay_reference(world, rows, lines, tmp_path)
    env = {"KAFKA_DELIVERY_TIMEOUT_MS": str(DELIVERY_TIMEOUT_MS)}
    orchestration.start_dataflow(world.stack, "pipeline", world.urls, env=env)
    half = len(lines) // 2
    world.produce_ticks(lines[:half])
    wait_until(lambda: len(world.fills()) >= 5, 90, "fills before the restart")

    broker.kill()
    time.sleep(2.0)  # the flow meets a dead broker
    broker.start()
    ticks_kept = len(consume_all(world.urls.kafka, MARKET_TICKS, 15))
    assert ticks_kept == half, "the restarted broker read every tick back from S3"

    world.produce_ticks(lines[half:])
    restarts = 0
    deadline = time.monotonic() + 240
    while world.fills() != fills and time.monotonic() < deadline:
        if world.stack.process("pipeline") is None:  # stopped loudly: restart it from recovery
            assert "KafkaDeliveryError" in log_text(world.stack, "pipeline"), "a loud, named stop"
            restarts += 1
            assert restarts <= 3, "the flow keeps failing after the broker came back"
            orchestration.start_dataflow(world.stack, "pipeline", world.urls, env=env)
        time.sleep(1)
    assert world.fills() == fills, "the ledger equals an uninterrupted run"
    wait_until(
        lambda: without_time(world.portfolios()) == without_time(reference), 60, "portfolios to equal replay"
    )
    assert ledger_duplicates(world.urls.postgres) == 0
    assert len(consume_all(world.urls.kafka, MARKET_TICKS, 15)) == len(lines)
