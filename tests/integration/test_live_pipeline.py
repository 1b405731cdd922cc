"""The live pipeline on real Kafka-API, Redis and PostgreSQL servers.

End to end, parity (replay = all-in-one = per-stage), recovery after
SIGKILL, and hot reload of strategy configurations.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from bytewax.testing import run_main
from prometheus_client import REGISTRY

import dataflows.portfolio_manager
import dataflows.risk_manager
import dataflows.strategy_runner
import dataflows.trading_engine
from alpha_panda import orchestration
from alpha_panda.replay import run_replay
from connectors.kafka.records import consume_all
from connectors.postgres import ledger_counts, set_strategy_active
from dataflows.pipeline import live_flow
from operators.strategy import StrategyConfig
from schemas.headers import TICK_CREATED
from schemas.topics import MARKET_TICKS
from tests.flows.conftest import tick_line
from tests.integration.live_world import World, live_world, simulated_ticks, wait_until
from tests.ledger_rows import ledger_orders

pytestmark = pytest.mark.integration

BAD = [
    b"not json at all",
    orjson.dumps(
        {
            "type": "market_tick",
            "data": {
                "instrument_token": 256265,
                "last_price": -1.0,
                "timestamp": "2024-01-02T09:15:00+05:30",
            },
        }
    ),
]


@pytest.fixture
def world(redis_url: str, postgres_url: str) -> Iterator[World]:
    with live_world(redis_url, postgres_url) as w:
        yield w


def replay_reference(
    world: World, rows: list[dict[str, Any]], lines: list[bytes], tmp_path: Path
) -> tuple[set, dict]:
    """Fills and final portfolios of `alpha-panda replay` over the same ticks."""
    ticks = tmp_path / "ticks.jsonl"
    ticks.write_bytes(b"".join(line + b"\n" for line in lines))
    out = tmp_path / "replay"
    run_replay(ticks, [StrategyConfig.from_mapping(r) for r in rows], out)
    fills = {
        (m["data"]["broker"], m["data"]["order_id"], m["data"]["fill_price"], m["data"]["quantity"])
        for broker in ("paper", "zerodha")
        for m in map(orjson.loads, (out / f"{broker}.orders.filled.jsonl").read_bytes().splitlines())
    }
    portfolios = json.loads((out / "portfolio.json").read_text())
    traded = {b: {s: p for s, p in accounts.items() if p["positions"]} for b, accounts in portfolios.items()}
    return fills, traded


def without_time(portfolios: dict) -> dict:
    return {
        b: {s: {k: v for k, v in p.items() if k != "timestamp"} for s, p in accounts.items()}
        for b, accounts in portfolios.items()
    }


def test_pipeline_end_to_end(world: World, tmp_path: Path) -> None:
    rows = world.seed()
    lines = simulated_ticks()
    world.produce_ticks(lines[:50] + BAD + lines[50:])

    run_main(live_flow(world.settings()))

    for broker in ("paper", "zerodha"):
        for stage in (
            "signals.raw",
            "signals.validated",
            "orders.submitted",
            "orders.filled",
            "pnl.snapshots",
        ):
            messages = world.topic(f"{broker}.{stage}")
            assert messages, f"{broker}.{stage} is empty"
            assert {m["broker"] for m in messages} == {broker}, "brokers never share a topic"
    letters = world.topic("market.ticks.dlq")
    reasons = sorted(letter["data"]["failure_info"]["error_message"] for letter in letters)
    assert len(reasons) == 2  # partitions do not keep the order between the two
    assert reasons[0].startswith("last_price must be")
    assert reasons[1].startswith("malformed JSON at character")

    counts = {b: ledger_counts(world.urls.postgres, b) for b in ("paper", "zerodha")}
    for broker in ("paper", "zerodha"):
        assert counts[broker]["fills"] == len(world.topic(f"{broker}.orders.filled")) > 0
    zerodha_strategies = {r["strategy_id"] for r in ledger_orders(world.urls.postgres, "zerodha")}
    enabled = {r["id"] for r in rows if r["zerodha_trading_enabled"] and r["is_active"]}
    assert zerodha_strategies <= enabled
    assert {r["execution_mode"] for r in ledger_orders(world.urls.postgres, "zerodha")} == {"dry_run"}

    portfolios = world.portfolios()
    for broker in ("paper", "zerodha"):
        last = {}
        for m in world.topic(f"{broker}.pnl.snapshots"):
            last[m["data"]["strategy_id"]] = m["data"]
        assert portfolios[broker] == last

    fills, reference = replay_reference(world, rows, lines, tmp_path)
    assert world.fills() == fills
    assert without_time(portfolios) == without_time(reference)


def test_per_stage_flows_match_the_pipeline_and_replay(world: World, tmp_path: Path) -> None:
    rows = world.seed()
    lines = simulated_ticks(seed=9)
    world.produce_ticks(lines)
    settings = world.settings()
    before = create_latency_counts()
    snapshots_before = snapshot_counts()

    for module in (
        dataflows.strategy_runner,
        dataflows.risk_manager,
        dataflows.trading_engine,
        dataflows.portfolio_manager,
    ):
        run_main(module.build(settings))

    fills, reference = replay_reference(world, rows, lines, tmp_path)
    assert fills
    assert world.fills() == fills
    assert without_time(world.portfolios()) == without_time(reference)

    # Every output a tick caused is timed once from that tick's Kafka create time, carried
    # across the four flows in the ap-tick-created-ms header; snapshots of marks are not.
    observed = create_latency_counts() - before
    expected: Counter[tuple[str, str]] = Counter()
    for broker in ("paper", "zerodha"):
        expected["signal", "market.ticks"] += len(world.topic(f"{broker}.signals.raw"))
        for stage in ("validated", "rejected"):
            expected[stage, "market.ticks"] += len(world.topic(f"{broker}.signals.{stage}"))
        filled = world.topic(f"{broker}.orders.filled")
        expected["filled", "market.ticks"] += len(filled)
        fill_ids = {m["id"] for m in filled}
        snapshots = world.topic(f"{broker}.pnl.snapshots")
        expected["pnl", "market.ticks"] += sum(m["causation_id"] in fill_ids for m in snapshots)
    assert +expected == observed
    assert min(expected.values()) > 0
    assert len(expected) == 5
    assert_fills_carry_their_ticks_create_time(world, "paper")
    # Bytewax snapshots every stateful step at epoch close (recovery or not); each call is timed.
    snapshots = snapshot_counts() - snapshots_before
    assert {step for step, count in snapshots.items() if count > 0} >= {"strategies", "risk", "portfolio"}


def assert_fills_carry_their_ticks_create_time(world: World, broker: str) -> None:
    """Each record on ``<broker>.orders.filled`` has the Kafka create time of its tick in its header."""
    created: dict[tuple[int, datetime, float], set[int]] = {}
    for record in consume_all(world.urls.kafka, MARKET_TICKS, 15):
        tick = orjson.loads(record.value or b"{}")["data"]
        key = (tick["instrument_token"], datetime.fromisoformat(tick["timestamp"]), tick["last_price"])
        assert record.timestamp_ms is not None
        created.setdefault(key, set()).add(record.timestamp_ms)
    validated = {m["id"]: m["data"]["original_signal"] for m in world.topic(f"{broker}.signals.validated")}
    fills = consume_all(world.urls.kafka, f"{broker}.orders.filled", 15)
    assert fills
    for record in fills:
        signal = validated[orjson.loads(record.value or b"{}")["causation_id"]]
        key = (signal["instrument_token"], datetime.fromisoformat(signal["timestamp"]), signal["price"])
        ((name, value),) = record.headers
        assert name == TICK_CREATED
        assert int(value) in created[key]


def snapshot_counts() -> Counter[str]:
    """Observations of ``alpha_panda_state_snapshot_seconds`` in this process, by step."""
    counts: Counter[str] = Counter()
    for family in REGISTRY.collect():
        for sample in family.samples:
            if sample.name == "alpha_panda_state_snapshot_seconds_count":
                counts[sample.labels["step"]] += int(sample.value)
    return counts


def create_latency_counts() -> Counter[tuple[str, str]]:
    """Observations of ``alpha_panda_stage_create_latency_seconds`` in this process, by (stage, input)."""
    counts: Counter[tuple[str, str]] = Counter()
    for family in REGISTRY.collect():
        for sample in family.samples:
            if sample.name == "alpha_panda_stage_create_latency_seconds_count":
                counts[sample.labels["stage"], sample.labels["input"]] += int(sample.value)
    return counts


def test_pipeline_recovers_from_sigkill_without_double_counting(world: World, tmp_path: Path) -> None:
    rows = world.seed()
    lines = simulated_ticks(ticks=400, seed=13)
    fills, reference = replay_reference(world, rows, lines, tmp_path)
    half = len(lines) // 2
    world.produce_ticks(lines[:half])
    env = {"STRATEGY_RELOAD_S": "0.5"}
    orchestration.start_dataflow(world.stack, "pipeline", world.urls, env=env, snapshot_s=1)
    wait_until(lambda: len(world.fills()) >= 20, 60, "fills before the kill")
    time.sleep(1.5)  # let at least one snapshot (every 1 s) land after the first fills
    assert world.stack.kill_process("pipeline")
    world.produce_ticks(lines[half:])
    orchestration.start_dataflow(world.stack, "pipeline", world.urls, env=env, snapshot_s=1)

    wait_until(lambda: world.fills() == fills, 90, "the ledger to equal an uninterrupted run")
    wait_until(
        lambda: without_time(world.portfolios()) == without_time(reference), 30, "portfolios to settle"
    )
    counts = ledger_counts(world.urls.postgres)
    assert counts["fills"] == len(fills)


def test_hot_reload_deactivates_and_activates_strategies(world: World) -> None:
    token = 256265
    a, b = f"{world.prefix}a", f"{world.prefix}b"
    strategy = {
        "strategy_type": "momentum",
        "instruments": [token],
        "zerodha_trading_enabled": False,
        "parameters": {"lookback_period": 5, "momentum_threshold": 0.01, "position_size": 10},
    }
    world.seed([{**strategy, "id": a, "is_active": True}, {**strategy, "id": b, "is_active": False}])
    orchestration.start_dataflow(
        world.stack, "pipeline", world.urls, env={"STRATEGY_RELOAD_S": "0.3"}, recovery=False
    )

    def signals() -> dict[str, list[int]]:
        by_strategy: dict[str, list[int]] = {}
        for m in world.topic("paper.signals.raw"):
            by_strategy.setdefault(m["data"]["strategy_id"], []).append(int(m["data"]["timestamp"][17:19]))
        return by_strategy

    def rise(start_second: int) -> list[bytes]:
        return [tick_line(token, 100.0, start_second + i) for i in range(5)] + [
            tick_line(token, 102.0, start_second + 5)
        ]

    world.produce_ticks(rise(0))
    wait_until(lambda: a in signals(), 60, "strategy a's first signal")
    set_strategy_active(world.urls.postgres, a, False)
    set_strategy_active(world.urls.postgres, b, True)
    time.sleep(3)  # several reload polls
    world.produce_ticks(rise(10))
    wait_until(lambda: b in signals(), 30, "strategy b's signal after activation")
    time.sleep(1)
    seen = signals()
    assert seen[a] == [5], "a signalled only before it was deactivated"
    assert seen[b] == [15], "b signalled only after it was activated"


def test_lag_of_a_partition_never_read_is_its_size(world: World) -> None:
    # trading_engine reads only empty topics here
    orchestration.start_dataflow(world.stack, "trading_engine", world.urls, snapshot_s=1)
    wait_until(
        lambda: orchestration.recovered_offsets(orchestration.recovery_dir(world.stack, "trading_engine")),
        60,
        "the first recovery snapshot",
    )
    assert orchestration.consumer_lag(world.stack, world.urls, "trading_engine") == {
        "paper.signals.validated": 0,
        "zerodha.signals.validated": 0,
    }


def _bad_events(key: str) -> list[tuple[str, bytes]]:
    """Hostile messages for a per-stage input topic: each a different way to be wrong."""
    shape = {
        "id": "x",
        "type": "order_filled",
        "ts": "2024-01-02T09:15:00Z",
        "broker": "paper",
        "correlation_id": "c",
        "causation_id": None,
        "source": "t",
        "version": 1,
        "key": key,
    }
    fill = {
        "order_id": "o",
        "strategy_id": key,
        "instrument_token": 256265,
        "side": "BUY",
        "quantity": 1,
        "timestamp": "2024-01-02T09:15:00Z",
        "broker": "paper",
        "execution_mode": "paper",
        "fill_price": 1.0,
        "fees": 0.1,
    }
    huge = dict(shape, data=dict(fill, quantity=10**30))
    nul = dict(shape, data=dict(fill, strategy_id=key + "\u0000"))  # valid but for the NUL
    return [
        (key, b"{not json"),
        (key, b'{"type":"trading_signal","data":' + b"[" * 3000 + b"]" * 3000 + b"}"),
        (key, orjson.dumps(nul)),
        (key, json.dumps(huge).encode()),
        (key, b"x" * 900_000),  # the broker takes at most 1 MB a message
        (key, orjson.dumps(dict(shape, ts="not a time"))),
    ]


REASONS = {
    "malformed JSON at character 1",
    "JSON nested deeper than 64 levels",
    "NUL character in a text field",
    "field data.quantity must be <= 1000000000, got 1000000000000000000000000000000",
    "message of 900000 bytes exceeds the 65536 byte limit",
    "field ts is not an ISO-8601 time: 'not a time'",
}


def test_per_stage_inputs_dead_letter_bad_messages_and_trade_like_replay(
    world: World, tmp_path: Path
) -> None:
    from connectors.kafka.records import produce

    rows = world.seed()
    lines = simulated_ticks(seed=19)
    world.produce_ticks(lines)
    keys = [r["id"] for r in rows if r["is_active"]]
    bad = [item for key in keys for item in _bad_events(key)]
    settings = world.settings()
    # Every input topic gets bad messages before its producer's good ones and
    # after them, so each flow's polls mix the two.
    stages = [
        ("paper.signals.raw", dataflows.strategy_runner, dataflows.risk_manager),
        ("paper.signals.validated", dataflows.risk_manager, dataflows.trading_engine),
        ("paper.orders.filled", dataflows.trading_engine, dataflows.portfolio_manager),
    ]
    for topic, _producer, _consumer in stages:
        produce(world.urls.kafka, topic, bad)
    run_main(dataflows.strategy_runner.build(settings))
    for topic, _producer, consumer in stages:
        produce(world.urls.kafka, topic, bad)
        run_main(consumer.build(settings))

    for topic, _producer, _consumer in stages:
        letters = world.topic(f"{topic}.dlq")
        assert len(letters) == 2 * len(bad), topic
        assert {letter["data"]["failure_info"]["error_message"] for letter in letters} == REASONS, topic
        assert all(letter["data"]["failure_info"]["error_type"] == "poison" for letter in letters)
        assert all(len(orjson.dumps(letter)) < 1_000_000 for letter in letters)
    fills, reference = replay_reference(world, rows, lines, tmp_path)
    assert world.fills() == fills
    assert without_time(world.portfolios()) == without_time(reference)
