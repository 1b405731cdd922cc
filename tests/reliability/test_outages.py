"""Server outages and crashes under the live pipeline: nothing lost, nothing doubled.

- Redis stopped for 10 s mid-stream: the Redis sink retries (counted in
  ``alpha_panda_retries``, scraped from the flow's ``/metrics``), nothing is
  dead-lettered, and portfolios end equal to a replay.
- Postgres restarted mid-stream: the ledger ends complete, without duplicates.
- Chaos: the pipeline SIGKILLed at seeded random moments, five times, and
  restarted each time: ledger and portfolios equal an uninterrupted run.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import psycopg
import pytest

from alpha_panda import orchestration
from alpha_panda.localstack import LocalStack, free_port
from connectors.localstack import POSTGRES, REDIS
from tests.integration.live_world import World, simulated_ticks, wait_until
from tests.integration.test_live_pipeline import replay_reference, without_time
from tests.reliability.conftest import log_text, scrape

pytestmark = pytest.mark.integration

OUTAGE_S = 10.0


def ledger_duplicates(url: str) -> int:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT (SELECT count(*) - count(DISTINCT (broker, order_id)) FROM fills)"
            " + (SELECT count(*) - count(DISTINCT (broker, order_id)) FROM orders)"
        ).fetchone()
    assert rows is not None
    return int(rows[0])


def test_redis_outage_of_10s_loses_nothing(own_world: tuple[World, LocalStack], tmp_path: Path) -> None:
    world, stack = own_world
    rows = world.seed()
    lines = simulated_ticks(ticks=500, seed=31)
    fills, reference = replay_reference(world, rows, lines, tmp_path)
    half = len(lines) // 2
    world.produce_ticks(lines[:half])
    port = free_port()
    orchestration.start_dataflow(world.stack, "pipeline", world.urls, env={"METRICS_PORT": str(port)})
    wait_until(lambda: len(world.fills()) >= 10 and any(world.portfolios().values()), 60, "first portfolios")

    stack.stop_process(REDIS)
    world.produce_ticks(lines[half:])
    time.sleep(OUTAGE_S)
    retries_during = scrape(port).get('alpha_panda_retries_total{error_type="infrastructure"}', 0)
    stack.start_server(REDIS)

    wait_until(lambda: world.fills() == fills, 60, "the ledger to equal an uninterrupted run")
    wait_until(
        lambda: without_time(world.portfolios()) == without_time(reference), 60, "portfolios to equal replay"
    )
    assert retries_during > 0, "the Redis sink retried during the outage"
    assert not world.topic("paper.pnl.snapshots.dlq"), "a 10 s outage is within the retry budget"
    assert "redis_portfolio_sink: ConnectionError (infrastructure), retry" in log_text(
        world.stack, "pipeline"
    )


def test_postgres_restart_leaves_a_complete_ledger_without_duplicates(
    own_world: tuple[World, LocalStack], tmp_path: Path
) -> None:
    world, stack = own_world
    rows = world.seed()
    lines = simulated_ticks(ticks=500, seed=37)
    fills, _reference = replay_reference(world, rows, lines, tmp_path)
    half = len(lines) // 2
    world.produce_ticks(lines[:half])
    orchestration.start_dataflow(world.stack, "pipeline", world.urls)
    wait_until(lambda: len(world.fills()) >= 10, 60, "first fills")

    stack.stop_process(POSTGRES)
    world.produce_ticks(lines[half:])
    time.sleep(2)
    stack.start_server(POSTGRES)

    wait_until(lambda: world.fills() == fills, 60, "the ledger to equal an uninterrupted run")
    assert ledger_duplicates(world.urls.postgres) == 0
    assert not world.topic("paper.orders.filled.dlq")


def test_chaos_sigkill_the_pipeline_five_times(world: World, tmp_path: Path) -> None:
    rows = world.seed()
    lines = simulated_ticks(ticks=600, seed=41)
    fills, reference = replay_reference(world, rows, lines, tmp_path)
    rng = random.Random(2024)
    kills = 5
    chunks = [lines[i * len(lines) // kills : (i + 1) * len(lines) // kills] for i in range(kills)]
    env = {"STRATEGY_RELOAD_S": "0.5"}
    moments = []
    producer = world.tick_producer()
    for chunk in chunks:
        world.produce_ticks(chunk, producer)
        orchestration.start_dataflow(world.stack, "pipeline", world.urls, env=env, snapshot_s=1)
        moment = rng.uniform(1.0, 4.0)  # start-up takes ~1.5 s: some kills land before it runs
        moments.append(round(moment, 2))
        time.sleep(moment)
        assert world.stack.kill_process("pipeline")
    print(f"\nSIGKILL after {moments} s; fills so far {len(world.fills())}/{len(fills)}")
    orchestration.start_dataflow(world.stack, "pipeline", world.urls, env=env, snapshot_s=1)

    wait_until(lambda: world.fills() == fills, 90, "the ledger to equal an uninterrupted run")
    wait_until(
        lambda: without_time(world.portfolios()) == without_time(reference), 30, "portfolios to settle"
    )
    assert ledger_duplicates(world.urls.postgres) == 0


STATEFUL_STAGES = ("strategy_runner", "risk_manager", "portfolio_manager")


def test_chaos_sigkill_the_per_stage_flows(world: World, tmp_path: Path) -> None:
    """Kill a random per-stage flow (stateful ones, and the trading engine) 6 times mid-stream.

    Restarted flows replay from their snapshots, so downstream flows see
    redelivered signals and fills; the ledger and portfolios must still equal
    an uninterrupted run.
    """
    rows = world.seed()
    lines = simulated_ticks(ticks=500, seed=43)
    fills, reference = replay_reference(world, rows, lines, tmp_path)
    flows = orchestration.DATAFLOW_SETS["per-stage"]
    env = {"STRATEGY_RELOAD_S": "0.5"}
    for name in flows:
        orchestration.start_dataflow(world.stack, name, world.urls, env=env, snapshot_s=1)
    rng = random.Random(7)
    kills = 6
    chunks = [lines[i * len(lines) // kills : (i + 1) * len(lines) // kills] for i in range(kills)]
    killed = []
    producer = world.tick_producer()
    for chunk in chunks:
        world.produce_ticks(chunk, producer)
        time.sleep(rng.uniform(0.5, 2.5))
        victim = rng.choice([*STATEFUL_STAGES, "trading_engine"])
        assert world.stack.kill_process(victim), f"{victim} was not running"
        killed.append(victim)
        orchestration.start_dataflow(world.stack, victim, world.urls, env=env, snapshot_s=1)
    print(f"\nSIGKILLed {killed}; fills so far {len(world.fills())}/{len(fills)}")
    assert set(killed) & set(STATEFUL_STAGES)

    wait_until(lambda: world.fills() == fills, 120, "the ledger to equal an uninterrupted run")
    wait_until(
        lambda: without_time(world.portfolios()) == without_time(reference), 60, "portfolios to settle"
    )
    assert ledger_duplicates(world.urls.postgres) == 0
