"""The instrument-group steps without an engine: timeline, split, groups and account shards."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from dataflows.placement import siphash13, worker_key, worker_of
from operators.account_shard import AccountShard
from operators.errors import ConfigError
from operators.execution import SimulatedExecution
from operators.fills import FillConfig, FillSimulator
from operators.instrument_group import InstrumentGroup, shard_of
from operators.portfolio import Portfolio, PortfolioConfig
from operators.risk import RiskConfig, RiskFilter
from operators.shard import ShardConfig, TradingShard
from operators.strategy import StrategyConfig
from operators.timeline import GroupSplitter, Timeline, group_of, tick_columns
from schemas.codec import decode_tick_batch, encode
from schemas.envelope import Outbound
from tests.flows.conftest import tick_line

TOKENS = (256265, 257265, 258265, 259265)
CONFIG = ShardConfig(brokers=("paper",), snapshot_interval=timedelta(seconds=5), service="t")
MOMENTUM = StrategyConfig(
    "mom", "momentum", TOKENS, (("lookback_period", 2), ("momentum_threshold", 0.01), ("position_size", 10))
)
FAST = StrategyConfig(
    "fast",
    "momentum",
    TOKENS[:2],
    (("lookback_period", 3), ("momentum_threshold", 0.005), ("position_size", 5)),
)


def _clock(at: datetime) -> datetime:
    return at


def _collaborators() -> tuple[RiskFilter, Portfolio, object]:
    # Little cash and few trades a day: the limits bind, so account order matters.
    simulated = SimulatedExecution(FillSimulator(FillConfig()), _clock, "t")
    risk = RiskFilter(RiskConfig(max_daily_trades=6, starting_cash=Decimal(5_000)))
    books = Portfolio(PortfolioConfig(starting_cash=Decimal(5_000)))
    return risk, books, lambda validated: simulated.execute(validated, "paper")


def _lines() -> list[bytes]:
    prices = [100.0, 102.0, 103.5, 101.0, 104.0, 106.5, 103.0, 108.0, 111.0, 107.0]
    return [
        tick_line(token, prices[(step + n) % len(prices)] + n, step)
        for step in range(20)
        for n, token in enumerate(TOKENS)
    ]


def _decoded(lines: list[bytes]):
    return decode_tick_batch(lines)


def _one_shard_messages(lines: list[bytes]) -> list[Outbound]:
    risk, portfolio, execute = _collaborators()
    shard = TradingShard([MOMENTUM, FAST], CONFIG, risk, portfolio, execute, _clock)  # type: ignore[arg-type]
    out: list[Outbound] = []
    for i in range(0, len(lines), 16):
        batch = _decoded(lines[i : i + 16])
        out.extend(shard.on_batch(batch.ticks, batch.times))
    out.extend(shard.flush())
    return out


def _one_shard(lines: list[bytes]) -> list[bytes]:
    return sorted(encode(m.envelope) for m in _one_shard_messages(lines))


def _grouped(lines: list[bytes], groups: int, shards: int, *, reverse_parts: bool) -> list[bytes]:
    risk, portfolio, execute = _collaborators()
    timeline = Timeline(CONFIG, _clock)
    splitter = GroupSplitter(groups)
    members = [InstrumentGroup(g, shards, [MOMENTUM, FAST]) for g in range(groups)]
    accounts = [
        AccountShard(s, shards, groups, [MOMENTUM, FAST], CONFIG, risk, portfolio, execute, _clock)  # type: ignore[arg-type]
        for s in range(shards)
    ]
    parts: list[list] = [[] for _ in range(shards)]
    out: list[Outbound] = []
    for i in range(0, len(lines), 16):
        batch = _decoded(lines[i : i + 16])
        plan = timeline.on_batch(out, tick_columns(batch.ticks, batch.times, batch.positions), lambda _i: ())
        for group, ticks in zip(members, splitter.split(plan), strict=True):
            for s, part in enumerate(group.on_step(ticks)):
                parts[s].append(part)
    for group in members:
        for s, part in enumerate(group.end_of_input()):
            parts[s].append(part)
    for s, shard in enumerate(accounts):
        # Parts arrive in any interleaving of the groups, each group's in order.
        ordered = sorted(parts[s], key=lambda p: (p.group, p.step if p.step > 0 else 10**9))
        for part in reversed(ordered) if reverse_parts else ordered:
            out.extend(shard.on_part(part))
        out.extend(shard.flush())
    return sorted(encode(m.envelope) for m in out)


def test_the_tape_trades_snapshots_and_hits_the_limits() -> None:
    out = _one_shard_messages(_lines())
    topics = Counter(m.topic for m in out)
    assert topics["paper.orders.filled"] >= 6
    assert topics["paper.pnl.snapshots"] >= 4
    reasons = " ".join(m.envelope.data.rejection_reason for m in out if m.topic == "paper.signals.rejected")
    assert "max_daily_trades: trade 7 on 2024-01-02 would exceed 6" in reasons


@pytest.mark.parametrize(("groups", "shards"), [(1, 1), (2, 1), (3, 2), (4, 3)])
@pytest.mark.parametrize("reverse_parts", [False, True])
def test_groups_and_account_shards_make_the_one_shard_messages(
    groups: int, shards: int, *, reverse_parts: bool
) -> None:
    assert _grouped(_lines(), groups, shards, reverse_parts=reverse_parts) == _one_shard(_lines())


def test_parts_in_reverse_still_wait_for_the_first_step() -> None:
    risk, portfolio, execute = _collaborators()
    shard = AccountShard(0, 1, 2, [MOMENTUM], CONFIG, risk, portfolio, execute, _clock)  # type: ignore[arg-type]
    group = InstrumentGroup(0, 1, [MOMENTUM])
    other = InstrumentGroup(1, 1, [MOMENTUM])
    timeline, splitter = Timeline(CONFIG, _clock), GroupSplitter(2)
    steps = []
    for i in range(0, 32, 16):
        batch = _decoded(_lines()[i : i + 16])
        plan = timeline.on_batch([], tick_columns(batch.ticks, batch.times, batch.positions), lambda _i: ())
        a, b = splitter.split(plan)
        steps.append((group.on_step(a)[0], other.on_step(b)[0]))
    assert shard.on_part(steps[1][0]) == []  # step 2 before step 1: held
    assert shard.on_part(steps[0][0]) == []  # step 1 still lacks group 1
    assert shard.state.done == 0
    shard.on_part(steps[0][1])
    assert shard.state.done == 1
    shard.on_part(steps[1][1])
    assert shard.state.done == 2
    assert shard.state.waiting == {}


def test_the_split_keeps_processing_positions_and_shares_boundaries() -> None:
    batch = _decoded(_lines()[:12])
    plan = Timeline(CONFIG, _clock).on_batch(
        [], tick_columns(batch.ticks, batch.times, batch.positions), lambda _i: ()
    )
    parts = GroupSplitter(3).split(plan)
    assert sorted(p for part in parts for p in part.positions) == list(range(12))
    for g, part in enumerate(parts):
        assert all(group_of(t, 3) == g for t in part.tokens)
        assert part.boundaries == plan.boundaries
        assert [batch.times[p] for p in part.positions] == part.times
    assert plan.boundaries == [(0, batch.times[0])]


def test_boundaries_follow_the_snapshot_interval_of_event_time() -> None:
    batch = _decoded(_lines())
    plan = Timeline(CONFIG, _clock).on_batch(
        [], tick_columns(batch.ticks, batch.times, batch.positions), lambda _i: ()
    )
    assert [at for _p, at in plan.boundaries] == [batch.times[0] + timedelta(seconds=5 * k) for k in range(4)]
    assert [p for p, _at in plan.boundaries] == [0, 20, 40, 60]


def test_account_shards_take_whole_strategies() -> None:
    assert shard_of("mom", 3) == shard_of("mom", 3)
    risk, portfolio, execute = _collaborators()
    with pytest.raises(ConfigError, match="account shard 3 of 3 with 2 instrument groups cannot run"):
        AccountShard(3, 3, 2, [MOMENTUM], CONFIG, risk, portfolio, execute, _clock)  # type: ignore[arg-type]


def test_worker_of_is_where_bytewax_put_these_keys() -> None:
    # Observed on Bytewax 0.21.1 with 2 workers: keys "0" to "3", "6" and "7" on one, "4", "5" on the other.
    assert [worker_of(str(i), 2) for i in range(8)] == [1, 1, 1, 1, 0, 0, 1, 1]
    assert siphash13(b"4\xff") % 2 == 0


def test_worker_keys_are_placed_for_every_divisor_of_840() -> None:
    for index in range(6):
        key = worker_key("group", index)
        assert key.startswith(f"group-{index}.")
        for workers in (1, 2, 3, 4, 5, 6, 7, 8, 12):
            assert worker_of(key, workers) == index % workers


def test_a_reload_step_switches_groups_and_accounts_between_the_same_batches_as_one_shard() -> None:
    lines = _lines()
    risk, portfolio, execute = _collaborators()
    one = TradingShard([MOMENTUM, FAST], CONFIG, risk, portfolio, execute, _clock)  # type: ignore[arg-type]
    expected: list[Outbound] = []
    for i in range(0, len(lines), 16):
        if i == 32:
            one.reload([MOMENTUM])
        batch = _decoded(lines[i : i + 16])
        expected.extend(one.on_batch(batch.ticks, batch.times))
    expected.extend(one.flush())

    timeline, splitter = Timeline(CONFIG, _clock), GroupSplitter(2)
    members = [InstrumentGroup(g, 2, [MOMENTUM, FAST]) for g in range(2)]
    shards = [
        AccountShard(s, 2, 2, [MOMENTUM, FAST], CONFIG, risk, portfolio, execute, _clock)  # type: ignore[arg-type]
        for s in range(2)
    ]
    got: list[Outbound] = []

    def deliver(parts_of_groups: list[list]) -> None:
        for parts in parts_of_groups:
            for s, part in enumerate(parts):
                got.extend(shards[s].on_part(part))

    for i in range(0, len(lines), 16):
        if i == 32:
            step = timeline.reload_step()
            reloads = splitter.reload(step, (MOMENTUM,), timeline.state.newest)
            deliver([g.on_step(r) for g, r in zip(members, reloads, strict=True)])
        batch = _decoded(lines[i : i + 16])
        plan = timeline.on_batch([], tick_columns(batch.ticks, batch.times, batch.positions), lambda _i: ())
        deliver([g.on_step(t) for g, t in zip(members, splitter.split(plan), strict=True)])
    deliver([g.end_of_input() for g in members])
    for shard in shards:
        got.extend(shard.flush())

    fast_after = [m for m in got if m.key.startswith("fast") and m.envelope.data.timestamp.second >= 8]
    assert fast_after == []
    assert any(m.key.startswith("fast") for m in got), "FAST traded before the reload"
    assert sorted(encode(m.envelope) for m in got) == sorted(encode(m.envelope) for m in expected)
