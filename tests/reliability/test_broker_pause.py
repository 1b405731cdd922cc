"""The Kafka-API broker paused (SIGSTOP) longer than the sink's delivery timeout, then resumed.

The pipeline either rides the pause out or stops loudly (``KafkaDeliveryError``
naming the undelivered messages) and is restarted, as an orchestrator would;
either way the ledger and the portfolios end equal to an uninterrupted run,
with no duplicate ledger rows.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
from confluent_kafka import Producer

from alpha_panda import orchestration
from connectors.localstack import KAFKA
from tests.integration.live_world import World, simulated_ticks, wait_until
from tests.integration.test_live_pipeline import replay_reference, without_time
from tests.reliability.conftest import log_text
from tests.reliability.test_outages import ledger_duplicates

pytestmark = pytest.mark.integration

DELIVERY_TIMEOUT_MS = 3_000
PAUSE_S = 8.0  # well past the delivery timeout
FEED_BATCH = 40
FEED_EVERY_S = 0.05  # ~800 ticks/s: ticks keep arriving before, during and after the pause


def _feed(world: World, lines: list[bytes], producer: Producer) -> None:
    """Produce ``lines`` in small paced batches, each acknowledged before the next."""
    for i in range(0, len(lines), FEED_BATCH):
        world.produce_ticks(lines[i : i + FEED_BATCH], producer)
        time.sleep(FEED_EVERY_S)


def test_a_broker_paused_past_the_delivery_timeout_loses_and_doubles_nothing(
    world: World, tmp_path: Path
) -> None:
    rows = world.seed()
    lines = simulated_ticks(ticks=600, seed=53)
    fills, reference = replay_reference(world, rows, lines, tmp_path)
    env = {"KAFKA_DELIVERY_TIMEOUT_MS": str(DELIVERY_TIMEOUT_MS)}
    orchestration.start_dataflow(world.stack, "pipeline", world.urls, env=env)
    third = len(lines) // 3
    world.produce_ticks(lines[:third])
    wait_until(lambda: len(world.fills()) >= 5, 60, "fills before the pause")

    broker = world.stack.process(KAFKA)
    assert broker is not None
    # Keep ticks arriving so that the flow has output in flight when the broker stops.
    # One producer for every batch: a new one waits ~0.5 s for its producer id.
    producer = world.tick_producer()
    world.produce_ticks(lines[third : third + FEED_BATCH], producer)
    feeder = threading.Thread(target=_feed, args=(world, lines[third + FEED_BATCH :], producer))
    feeder.start()
    time.sleep(0.3)
    os.kill(broker.pid, signal.SIGSTOP)
    try:
        time.sleep(PAUSE_S)
    finally:
        os.kill(broker.pid, signal.SIGCONT)
    feeder.join(timeout=120)
    assert not feeder.is_alive()

    restarts = 0
    deadline = time.monotonic() + 180
    while world.fills() != fills and time.monotonic() < deadline:
        if world.stack.process("pipeline") is None:  # stopped loudly: restart it from recovery
            assert "KafkaDeliveryError" in log_text(world.stack, "pipeline")
            restarts += 1
            assert restarts <= 3, "the flow keeps failing after the broker came back"
            orchestration.start_dataflow(world.stack, "pipeline", world.urls, env=env)
        time.sleep(0.5)
    assert world.fills() == fills, "the ledger equals an uninterrupted run"
    wait_until(
        lambda: without_time(world.portfolios()) == without_time(reference), 60, "portfolios to equal replay"
    )
    assert ledger_duplicates(world.urls.postgres) == 0
