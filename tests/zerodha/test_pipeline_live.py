"""The all-in-one flow trading live on the local Kite server, with Kite's updates flowing back.

Both flows run as `alpha-panda up` starts them (``orchestration.start_dataflow``),
on a world of their own (Tansu, a fresh database) with the session's Redis.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from alpha_panda import orchestration
from connectors.kite.placer import order_tag
from schemas.envelope import event_id
from tests.flows.conftest import tick_line
from tests.integration.live_world import World, live_world, wait_until
from tests.zerodha.kite_server import ACCESS_TOKEN, API_KEY, API_SECRET, FakeKite

pytestmark = pytest.mark.integration

TOKEN = 256265
MOMENTUM = {
    "strategy_type": "momentum",
    "instruments": [TOKEN],
    "parameters": {"lookback_period": 5, "momentum_threshold": 0.01, "position_size": 10},
    "is_active": True,
    "zerodha_trading_enabled": True,
}


@pytest.fixture
def world(redis_url: str, postgres_url: str) -> Iterator[World]:
    with live_world(redis_url, postgres_url) as w:
        try:
            yield w
        finally:
            w.stack.stop_process(orchestration.ZERODHA_UPDATES)


def kite_env(kite: FakeKite) -> dict[str, str]:
    return {
        "ZERODHA_LIVE_TRADING": "true",
        "KITE_API_KEY": API_KEY,
        "KITE_ACCESS_TOKEN": ACCESS_TOKEN,
        "KITE_API_SECRET": API_SECRET,
        "KITE_API_URL": kite.base_url,
        "KITE_TIMEOUT_S": "2",
        "ZERODHA_POLL_S": "0.3",
        "MAX_POSITION_SIZE": "10",
        "STARTING_CASH": "1000000",
        "HALT_REFRESH_S": "0.2",
        "METRICS_PORT": "0",
    }


def rise(start_second: int, flat: float, top: float) -> list[bytes]:
    """Five flat ticks, then up by more than 1 %: one BUY of 10 from each momentum strategy."""
    return [tick_line(TOKEN, flat, start_second + i) for i in range(5)] + [
        tick_line(TOKEN, top, start_second + 5)
    ]


def by_strategy(world: World, topic: str) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for message in world.topic(topic):
        out.setdefault(message["data"].get("strategy_id") or message["key"], []).append(message)
    return out


def test_live_fills_move_the_books_and_a_rejection_releases_risk(kite: FakeKite, world: World) -> None:
    filler, rejected = f"{world.prefix}fill", f"{world.prefix}rej"
    world.seed([{**MOMENTUM, "id": filler}, {**MOMENTUM, "id": rejected}])
    with psycopg.connect(world.urls.postgres) as conn:
        conn.execute(
            "INSERT INTO instruments (instrument_token, exchange_token, tradingsymbol, name, tick_size,"
            " lot_size, instrument_type, segment, exchange)"
            " VALUES (%s, 1001, 'INFY', 'Infosys', 0.05, 1, 'EQ', 'NSE', 'NSE')",
            (TOKEN,),
        )
    env = kite_env(kite)
    flows = orchestration.dataflows_for(
        ("pipeline",), world.settings(**{k.lower(): v for k, v in env.items()})
    )
    assert flows == ("pipeline", "zerodha_updates")
    for name in flows:
        orchestration.start_dataflow(world.stack, name, world.urls, env=env, recovery=False)

    world.produce_ticks(rise(0, 100.0, 102.0))
    wait_until(lambda: len(kite.placements()) == 2, 90, "both strategies' orders at Kite")
    submitted = {m["data"]["strategy_id"]: m["data"] for m in world.topic("zerodha.orders.submitted")}
    assert {s: (d["execution_mode"], d["quantity"]) for s, d in submitted.items()} == {
        filler: ("live", 10),
        rejected: ("live", 10),
    }
    [fill_order] = kite.orders_tagged(order_tag(submitted[filler]["order_id"]))
    [reject_order] = kite.orders_tagged(order_tag(submitted[rejected]["order_id"]))

    # The exchange fills 4 of 10 and the RMS rejects the other order.
    kite.fill(fill_order["order_id"], 4, 101.0)
    kite.reject(reject_order["order_id"], "RMS: margin exceeds")
    wait_until(
        lambda: rejected in by_strategy(world, "zerodha.orders.failed"), 30, "the rejection on orders.failed"
    )
    partial = event_id("order_submitted", submitted[filler]["order_id"], "OPEN", 4)
    wait_until(
        lambda: partial in {m["id"] for m in world.topic("zerodha.orders.submitted")},
        30,
        "the partial fill reported as OPEN, 4 filled",
    )
    # A partial fill is no fill yet: the live books have not moved.
    assert filler not in world.portfolios()["zerodha"]

    kite.fill(fill_order["order_id"], 6, 102.0)
    wait_until(
        lambda: world.portfolios()["zerodha"].get(filler, {}).get("positions"),
        30,
        "the fill in the Redis books",
    )
    book = world.portfolios()["zerodha"][filler]
    [fill] = by_strategy(world, "zerodha.orders.filled")[filler]
    assert (fill["data"]["quantity"], fill["data"]["fill_price"]) == (10, 101.6)
    assert {k: (p["quantity"], p["average_price"]) for k, p in book["positions"].items()} == {
        str(TOKEN): (10, 101.6)
    }
    assert book["cash"] == pytest.approx(1_000_000 - 1016.0 - fill["data"]["fees"], abs=1e-6)
    assert rejected not in world.portfolios()["zerodha"]

    # The same signal again: the rejected order's booking was released, so it fits the limit of 10;
    # the filled strategy holds 10 and is refused.
    world.produce_ticks(rise(10, 102.0, 104.5))  # no dip: no SELL between

    def decided() -> bool:
        return len(
            by_strategy(world, "zerodha.signals.validated").get(rejected, [])
        ) == 2 and filler in by_strategy(world, "zerodha.signals.rejected")

    wait_until(decided, 60, "risk's decisions on the second signals")
    validated = by_strategy(world, "zerodha.signals.validated")
    refused = by_strategy(world, "zerodha.signals.rejected")
    assert len(kite.placements()) == 3  # the released strategy's second order
    assert (len(validated[rejected]), len(validated[filler])) == (2, 1)
    assert [m["data"]["rejection_reason"] for m in refused[filler]] == [
        "max_position_size: position 20 would exceed 10"
    ]
    assert rejected not in refused
