"""The live pipeline writes equity history; the dashboard shows it, the flow and its lag per partition."""

from __future__ import annotations

import httpx
import psycopg
import pytest
from bytewax import operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource, run_main

from alpha_panda import orchestration
from alpha_panda.dashboard.server import start_dashboard
from connectors.equity import EquityHistorySink, equity_rows
from tests.dashboard.seed import snapshot
from tests.integration.live_world import World, simulated_ticks, wait_until

pytestmark = pytest.mark.integration


def history(world: World) -> set[tuple[str, str, str, float]]:
    with psycopg.connect(world.urls.postgres) as conn:
        rows = conn.execute(
            "SELECT broker, strategy_id, event_id, total_value FROM equity_history"
        ).fetchall()
    return {(b, s, e, v) for b, s, e, v in rows if s.startswith(world.prefix)}


def published(world: World) -> set[tuple[str, str, str, float]]:
    return {
        (m["broker"], m["data"]["strategy_id"], m["id"], m["data"]["total_value"])
        for broker in ("paper", "zerodha")
        for m in world.topic(f"{broker}.pnl.snapshots")
    }


def test_sink_is_idempotent_and_dedupes_a_batch(world: World) -> None:
    items = [snapshot("paper", f"{world.prefix}a", 990_000.0, step) for step in range(3)]
    assert len(equity_rows([*items, items[0]])) == 3
    for _ in range(2):  # a redelivered batch adds nothing
        flow = Dataflow("equity")
        op.output("equity", op.input("in", flow, TestingSource([*items, items[1]], batch_size=2)),
                  EquityHistorySink(world.urls.postgres))  # fmt: skip
        run_main(flow)
    assert history(world) == {
        ("paper", f"{world.prefix}a", item.envelope.id, item.envelope.data.total_value) for item in items
    }


def test_live_pipeline_keeps_equity_history_across_a_restart(world: World) -> None:
    world.seed()
    world.produce_ticks(simulated_ticks(ticks=200, seed=3))
    orchestration.start_dataflow(world.stack, "pipeline", world.urls, snapshot_s=1)
    wait_until(lambda: len(history(world)) > 20 and history(world) == published(world), 90, "equity history")
    before = history(world)
    assert {b for b, *_ in before} == {"paper", "zerodha"}

    # SIGKILL: the restarted flow redelivers its last epoch; history gains no row.
    assert world.stack.kill_process("pipeline")
    orchestration.start_dataflow(world.stack, "pipeline", world.urls, snapshot_s=1)
    settings = world.settings(dashboard_token="t0ken", dashboard_port=0)
    running = start_dashboard(settings, world.urls, world.stack, health_every_s=1.0)
    auth = {"Authorization": "Bearer t0ken"}
    try:
        assert running.sources.monitor.wait_ready(30), "first health check"

        def health() -> dict:
            return httpx.get(running.url + "api/health", headers=auth).json()

        wait_until(
            lambda: (
                [(f["name"], f["alive"]) for f in health()["flows"]] == [("pipeline", True)]
                and [(r["topic"], r["partition"], r["lag"]) for r in health()["lag"]]
                == [("market.ticks", 0, 0)]
            ),
            60,
            "the restarted flow to catch up (lag 0 on market.ticks partition 0)",
        )
        assert history(world) == before == published(world)
        broker, strategy, *_ = sorted(before)[0]
        points = httpx.get(running.url + f"api/equity/{broker}/{strategy}", headers=auth).json()["points"]
        assert sorted(p["total_value"] for p in points) == sorted(
            v for b, s, _e, v in before if (b, s) == (broker, strategy)
        )
        metrics = httpx.get(running.url + "metrics", headers=auth).text
        assert (
            'alpha_panda_consumer_lag{dataflow="pipeline",partition="0",topic="market.ticks"} 0.0' in metrics
        )
        assert 'alpha_panda_dataflow_up{dataflow="pipeline"} 1.0' in metrics
    finally:
        running.stop()
