"""`alpha-panda reconcile` on real servers: it shows exactly the damage done, and repair undoes it.

A live pipeline trades a simulated market to the end and goes idle. Then,
with the flow still running, Redis is flushed (one account is put back
with a wrong cash and position) and three ledger fills are deleted.
Reconcile must report exactly those differences; ``--repair`` must bring the
ledger and Redis back to what an uninterrupted run holds.
"""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import psycopg
import pytest
from typer.testing import CliRunner

from alpha_panda import orchestration
from alpha_panda.cli import app
from alpha_panda.localstack import LocalStack
from alpha_panda.reconcile import reconcile
from connectors.redis_portfolio import portfolio_key, redis_client
from operators.portfolio import PortfolioConfig
from tests.integration.live_world import World, simulated_ticks, wait_until
from tests.integration.test_live_pipeline import replay_reference, without_time
from tests.reliability.test_outages import ledger_duplicates

pytestmark = pytest.mark.integration


def _reconcile(world: World):  # the report type is the module's
    return reconcile(
        kafka=world.urls.kafka,
        redis_url=world.urls.redis,
        postgres_url=world.urls.postgres,
        brokers=("paper", "zerodha"),
        config=PortfolioConfig(),
    )


def _snapshot_count(world: World) -> int:
    return len(world.topic("paper.pnl.snapshots")) + len(world.topic("zerodha.pnl.snapshots"))


def test_reconcile_reports_exactly_the_damage_and_repair_restores_equality(
    own_world: tuple[World, LocalStack], tmp_path: Path
) -> None:
    world, _stack = own_world
    rows = world.seed()
    lines = simulated_ticks(ticks=400, seed=47)
    fills, reference = replay_reference(world, rows, lines, tmp_path)
    orchestration.start_dataflow(world.stack, "pipeline", world.urls)
    world.produce_ticks(lines)
    wait_until(lambda: world.fills() == fills, 90, "the ledger to equal a replay")
    wait_until(lambda: without_time(world.portfolios()) == without_time(reference), 60, "portfolios")
    quiet = _snapshot_count(world)
    time.sleep(3)
    assert _snapshot_count(world) == quiet, "the flow is idle before the damage"

    clean = _reconcile(world)
    assert clean.differences == []
    assert sum(len(a.topic_fills) for a in clean.accounts) == len(fills)

    # The damage, with the pipeline still running.
    before = world.portfolios()
    accounts = sorted((b, s) for b, by_strategy in before.items() for s in by_strategy)
    assert len(accounts) >= 3
    client = redis_client(world.urls.redis)
    client.flushall()
    stale_broker, stale_id = accounts[0]
    stale = dict(before[stale_broker][stale_id])
    token = sorted(stale["positions"])[0]
    stale["cash"] += 1000.0
    stale["positions"] = {**stale["positions"], token: {**stale["positions"][token]}}
    stale["positions"][token]["quantity"] += 7
    client.set(portfolio_key(stale_broker, stale_id), orjson.dumps(stale))
    deleted = sorted(fills)[::7][:3]
    with psycopg.connect(world.urls.postgres, autocommit=True) as conn:
        for broker, order_id, _price, _quantity in deleted:
            conn.execute("DELETE FROM fills WHERE broker = %s AND order_id = %s", (broker, order_id))
    time.sleep(2)
    assert [k.decode() for k in client.keys("*")] == [portfolio_key(stale_broker, stale_id)]

    report = _reconcile(world)
    owner = {
        (b, o): a.strategy_id for a in clean.accounts for (b, o) in ((a.broker, f) for f in a.topic_fills)
    }
    expected = {("redis_missing", b, s, None) for b, s in accounts[1:]}
    expected |= {("redis_stale", stale_broker, stale_id, None)}
    expected |= {("ledger_missing", b, owner[(b, o)], o) for b, o, _p, _q in deleted}
    assert {(d.kind, d.broker, d.strategy_id, d.order_id) for d in report.differences} == expected
    (stale_note,) = [d.detail for d in report.differences if d.kind == "redis_stale"]
    assert "cash" in stale_note
    assert f"position {token} quantity" in stale_note

    runner = CliRunner()
    data_dir = ["--data-dir", str(world.stack.data_dir)]
    shown = runner.invoke(app, ["reconcile", *data_dir])
    assert shown.exit_code == 1, shown.output
    assert f"{len(expected)} difference(s)" in shown.output

    repaired = runner.invoke(app, ["reconcile", "--repair", *data_dir])
    assert repaired.exit_code == 0, repaired.output
    assert f"repaired: 3 ledger row(s), {len(accounts)} Redis portfolio(s)" in repaired.output
    assert "no differences: ledger, topics and Redis agree" in repaired.output

    assert world.fills() == fills
    assert without_time(world.portfolios()) == without_time(reference)
    assert ledger_duplicates(world.urls.postgres) == 0
    assert _reconcile(world).differences == []
