"""A user strategy from an entry point trades in the live all-in-one flow exactly as in replay.

Real Tansu, Redis and PostgreSQL (the session's servers); the flow runs
in this process, so it finds the temporary package's entry point.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from bytewax.testing import run_main

from alpha_panda.replay import run_replay
from dataflows.pipeline import live_flow
from operators.strategy import StrategyConfig
from tests.integration.live_world import World, live_world, simulated_ticks
from tests.sdk.conftest import ENTRY_POINT

pytestmark = pytest.mark.integration

TOKENS = [256265 + 1000 * i for i in range(10)]


@pytest.fixture
def world(redis_url: str, postgres_url: str) -> Iterator[World]:
    with live_world(redis_url, postgres_url) as w:
        yield w


def test_entry_point_strategy_trades_live_with_the_fills_of_replay(
    user_package: str, world: World, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    band = {
        "id": f"{world.prefix}band",
        "strategy_type": ENTRY_POINT,
        "instruments": TOKENS,
        "parameters": {"window": 8, "width": 0.004, "position_size": 10},
        "is_active": True,
        "zerodha_trading_enabled": True,
    }
    momentum = {
        "id": f"{world.prefix}momentum",
        "strategy_type": "momentum",
        "instruments": TOKENS[:5],
        "parameters": {"lookback_period": 10, "momentum_threshold": 0.008, "position_size": 50},
        "is_active": True,
        "zerodha_trading_enabled": False,
    }
    broken = {**band, "id": f"{world.prefix}broken", "strategy_type": "user_exploding"}
    world.seed([band, broken, momentum])
    lines = simulated_ticks(seed=13)
    world.produce_ticks(lines)

    with caplog.at_level(logging.ERROR, logger="alpha_panda.dataflows"):
        run_main(live_flow(world.settings()))

    assert (
        f"skipping strategy configuration '{world.prefix}broken': strategy '{world.prefix}broken': "
        "strategy_type 'user_exploding' (Exploding) is broken: RuntimeError: no licence file found"
        in [r.getMessage() for r in caplog.records]
    )
    ticks = tmp_path / "ticks.jsonl"
    ticks.write_bytes(b"".join(line + b"\n" for line in lines))
    out = tmp_path / "replay"
    run_replay(ticks, [StrategyConfig.from_mapping(r) for r in (band, momentum)], out)
    replayed = {
        (m["data"]["broker"], m["data"]["order_id"], m["data"]["fill_price"], m["data"]["quantity"])
        for broker in ("paper", "zerodha")
        for m in map(orjson.loads, (out / f"{broker}.orders.filled.jsonl").read_bytes().splitlines())
    }
    live = world.fills()
    assert live == replayed
    by_strategy = {
        m["data"]["strategy_id"]
        for m in map(orjson.loads, (out / "paper.orders.filled.jsonl").read_bytes().splitlines())
    }
    assert by_strategy == {band["id"], momentum["id"]}  # the user strategy traded, and so did the other
    assert {b for b, *_ in live} == {"paper", "zerodha"}
