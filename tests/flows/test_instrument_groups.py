"""The trading stage split by instrument group gives exactly the one-shard messages.

The tape trades on both brokers, and the risk limits bind (cash runs out,
the daily trade count is reached), so a signal applied out of its account's
order would change later decisions. Every layout, 1, 2 and 4 workers and 2
to 5 instrument groups, must publish the same messages, in the same order
per topic and key, as the default one-group path.
"""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from datetime import timedelta
from decimal import Decimal

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.operators import StatefulLogic
from bytewax.testing import TestingSink, TestingSource

from dataflows.clock import event_time_clock
from dataflows.pipeline import PipelineParams, build_pipeline
from dataflows.placement import worker_key
from operators.risk import RiskConfig
from operators.strategy import StrategyConfig
from schemas.codec import RawBatch, encode
from schemas.envelope import Outbound
from tests.flows.conftest import run_with_workers, tick_line
from tests.flows.test_pipeline_workers import CONFIGS, EPOCH, raw_ticks, simulated

LIMITS = RiskConfig(max_daily_trades=20, starting_cash=Decimal(250_000), max_position_size=300)


def outputs(
    batches: list[RawBatch],
    *,
    groups: int,
    shards: int = 1,
    workers: int = 0,
    configs: list[StrategyConfig] = CONFIGS,
    snapshot_interval: timedelta = timedelta(seconds=10),
) -> list[Outbound]:
    flow = Dataflow("groups_test")
    raw = op.input("ticks", flow, TestingSource(batches))
    out: list[list[Outbound]] = []
    params = PipelineParams(groups=groups, shards=shards, risk=LIMITS, snapshot_interval=snapshot_interval)
    published = build_pipeline(raw, configs, params, clock=event_time_clock, dlq_clock=lambda _m: EPOCH)
    op.output("out", published, TestingSink(out))
    run_with_workers(flow, workers)
    return [message for batch in out for message in batch]


def per_key(messages: list[Outbound]) -> dict[tuple[str, str], list[bytes]]:
    """Each (topic, key)'s messages in publication order, encoded."""
    sequences: dict[tuple[str, str], list[bytes]] = defaultdict(list)
    for m in messages:
        sequences[(m.topic, m.key)].append(encode(m.envelope))
    return dict(sequences)


def tape() -> list[RawBatch]:
    lines = simulated(instruments=12, ticks=300)
    lines.insert(11, b"{broken")
    return raw_ticks(lines, size=50)


@pytest.fixture(scope="module")
def one_shard() -> list[Outbound]:
    return outputs(tape(), groups=1)


def test_the_tape_trades_and_the_limits_bind(one_shard: list[Outbound]) -> None:
    topics = Counter(m.topic for m in one_shard)
    for broker in ("paper", "zerodha"):
        assert topics[f"{broker}.orders.filled"] > 20, broker
        assert topics[f"{broker}.pnl.snapshots"] > 5, broker
    reasons = " ".join(
        m.envelope.data.rejection_reason for m in one_shard if m.topic.endswith(".signals.rejected")
    )
    assert "sufficient_cash: cost" in reasons
    assert "max_daily_trades: trade 21 on" in reasons
    assert topics["market.ticks.dlq"] == 1


@pytest.mark.parametrize(
    ("groups", "shards", "workers"),
    [(2, 1, 0), (3, 2, 0), (5, 3, 0), (2, 1, 2), (3, 2, 2), (4, 2, 4), (5, 1, 4)],
)
def test_every_layout_publishes_the_one_shard_messages(
    one_shard: list[Outbound], groups: int, shards: int, workers: int
) -> None:
    grouped = outputs(tape(), groups=groups, shards=shards, workers=workers)
    assert len(grouped) == len(one_shard)
    assert per_key(grouped) == per_key(one_shard)


def test_snapshot_boundaries_inside_batches_mark_with_the_prices_before_them() -> None:
    # A 1 s interval puts several boundaries inside each batch of 50 ticks.
    expected = outputs(tape(), groups=1, snapshot_interval=timedelta(seconds=1))
    snapshots = [m for m in expected if m.topic == "paper.pnl.snapshots"]
    assert len(snapshots) > 100
    assert per_key(
        outputs(tape(), groups=3, shards=2, workers=2, snapshot_interval=timedelta(seconds=1))
    ) == (per_key(expected))


MOMENTUM = StrategyConfig(
    "mom",
    "momentum",
    (256265, 257265, 258265),
    (("lookback_period", 2), ("momentum_threshold", 0.01), ("position_size", 10)),
)


def skewed_tape() -> list[RawBatch]:
    """Ticks with one outlier a year ahead (dead-lettered) and a real gap of two days (replayed)."""
    lines, second = [], 0
    for step in range(50):
        second += 1
        for n, token in enumerate((256265, 257265, 258265)):
            lines.append(tick_line(token, 100.0 + (step % 7) * 1.5 + n, second))
        if step == 10:
            lines.append(tick_line(257265, 120.0, second + 366 * 86_400))
    second += 2 * 86_400
    for step in range(20):
        second += 1
        for n, token in enumerate((256265, 257265, 258265)):
            lines.append(tick_line(token, 110.0 + (step % 5) * 2.0 + n, second))
    return raw_ticks(lines, size=16)


def test_held_ticks_replay_and_dead_letter_as_in_one_shard() -> None:
    expected = outputs(skewed_tape(), groups=1, configs=[MOMENTUM])
    letters = [m for m in expected if m.topic == "market.ticks.dlq"]
    assert [m.envelope.data.failure_info.error_class for m in letters] == ["TickSkewError"]
    assert '"last_price":120.0' in letters[0].envelope.data.original_message.value
    late = [m for m in expected if m.topic == "paper.orders.filled" and m.envelope.data.timestamp.day >= 4]
    assert late, "ticks after the two-day gap traded"
    for groups, workers in ((2, 0), (3, 2)):
        assert per_key(outputs(skewed_tape(), groups=groups, configs=[MOMENTUM], workers=workers)) == (
            per_key(expected)
        )


def test_no_ticks_but_bad_ones_publish_only_dead_letters() -> None:
    batches = [RawBatch("market.ticks", [b"{broken", b"[]"], [1, 2])]
    out = outputs(batches, groups=3, shards=2, workers=2)
    assert sorted(m.topic for m in out) == ["market.ticks.dlq", "market.ticks.dlq"]


class _Where(StatefulLogic[int, tuple[int, str], None]):
    def on_item(self, value: int) -> tuple[list[tuple[int, str]], bool]:
        return [(value, threading.current_thread().name)], StatefulLogic.RETAIN

    def snapshot(self) -> None:
        return None


@pytest.mark.parametrize("workers", [2, 3, 4])
def test_placed_keys_land_on_worker_index_modulo_workers(workers: int) -> None:
    # The pinned Bytewax routes keys by SipHash; groups spread over workers only if this holds.
    flow = Dataflow("placement")
    keys = [(worker_key("group", i), i) for i in range(2 * workers)]
    seen: list[tuple[str, tuple[int, str]]] = []
    stream = op.stateful("where", op.input("keys", flow, TestingSource(keys)), lambda _r: _Where())
    op.output("out", stream, TestingSink(seen))
    run_with_workers(flow, workers)
    thread_of = {index: thread for _key, (index, thread) in seen}
    assert len(thread_of) == 2 * workers
    assert len(set(thread_of.values())) == workers
    for i in range(workers):
        assert thread_of[i] == thread_of[i + workers]
