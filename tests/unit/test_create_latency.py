"""Latency from a tick's Kafka create time, and snapshot timing, without an engine or a broker."""

from __future__ import annotations

from datetime import datetime, timedelta

from prometheus_client import REGISTRY

from dataflows.metrics import (
    INPUT_CREATED,
    InputCreateTimes,
    batch_create_latencies,
    observe_batch_create_latency,
    observe_published,
    snapshot_timer,
)
from operators.execution import SimulatedExecution
from operators.fills import FillConfig, FillSimulator
from operators.portfolio import Portfolio, PortfolioConfig
from operators.risk import RiskConfig, RiskFilter
from operators.shard import ShardConfig, TradingShard
from operators.strategy import StrategyConfig
from schemas.codec import decode_tick_batch
from tests.flows.conftest import START, tick_line

MOMENTUM = StrategyConfig(
    "mom",
    "momentum",
    (256265,),
    (("lookback_period", 2), ("momentum_threshold", 0.01), ("position_size", 10)),
)
MS = timedelta(milliseconds=1)


def _clock(at: datetime) -> datetime:
    # Every event is "created" 500 ms of wall time after its tick's exchange time.
    return at + 500 * MS


def _shard(snapshot_s: float) -> TradingShard:
    simulated = SimulatedExecution(FillSimulator(FillConfig()), _clock, "t")
    return TradingShard(
        [MOMENTUM],
        ShardConfig(brokers=("paper",), snapshot_interval=timedelta(seconds=snapshot_s), service="t"),
        RiskFilter(RiskConfig(max_position_size=10)),
        Portfolio(PortfolioConfig()),
        lambda validated: simulated.execute(validated, "paper"),
        _clock,
    )


# Raw batch: a bad message at position 1, so decoded tick i is not raw message i.
RAW = [
    tick_line(256265, 100.0, 0),
    b"not json",
    tick_line(256265, 102.0, 1),  # buys: +2% over the lookback
    tick_line(256265, 103.0, 2),
    tick_line(256265, 100.0, 3),  # sells
    tick_line(256265, 100.0, 4),
]


def _created(*late_ms: int | None) -> list[datetime | None]:
    """Kafka create times of ``RAW``: ``late_ms[i]`` ms after its tick's exchange time (None: none)."""
    seconds = (0, 0, 1, 2, 3, 4)
    return [
        None if ms is None else START + timedelta(seconds=second) + ms * MS
        for second, ms in zip(seconds, late_ms, strict=True)
    ]


def test_latency_is_creation_minus_the_create_time_of_the_tick_behind_it() -> None:
    batch = decode_tick_batch(RAW)
    out = _shard(snapshot_s=1).on_batch(batch.ticks, batch.times)
    assert [m.topic.split(".", 1)[1] for m in out] == [
        "signals.raw",
        "signals.validated",
        "orders.submitted",
        "orders.filled",
        "pnl.snapshots",  # due at second 2
        "pnl.snapshots",  # due at second 3, before the sell
        "signals.raw",
        "signals.validated",
        "orders.submitted",
        "orders.filled",
        "pnl.snapshots",  # due at second 4
    ]
    # Every event is created 500 ms after its tick's exchange time.
    created = _created(0, None, 100, 250, 480, 0)
    latencies = batch_create_latencies(out, batch.ticks, batch.times, batch.positions, created)
    assert latencies == [
        ("signal", 0.4),
        ("validated", 0.4),
        ("filled", 0.4),
        ("pnl", 0.25),
        ("pnl", 0.02),
        ("signal", 0.02),
        ("validated", 0.02),
        ("filled", 0.02),
        ("pnl", 0.5),
    ]


def test_ticks_without_a_create_time_are_skipped_and_clocks_ahead_read_zero() -> None:
    batch = decode_tick_batch(RAW)
    out = _shard(snapshot_s=60).on_batch(batch.ticks, batch.times)
    # The sell tick has no create time: its events are not timed; submitted never is.
    latencies = batch_create_latencies(
        out, batch.ticks, batch.times, batch.positions, _created(0, None, 0, 0, None, 0)
    )
    assert latencies == [("signal", 0.5), ("validated", 0.5), ("filled", 0.5)]
    # A producer clock 900 ms ahead: created after the event, never a negative latency.
    ahead = batch_create_latencies(
        out, batch.ticks, batch.times, batch.positions, _created(0, None, 900, 0, 0, 0)
    )
    assert ahead == [("signal", 0.0), ("validated", 0.0), ("filled", 0.0)] + [
        ("signal", 0.5),
        ("validated", 0.5),
        ("filled", 0.5),
    ]
    assert batch_create_latencies([], batch.ticks, batch.times, batch.positions, _created(*[0] * 6)) == []


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_the_batch_observer_fills_the_histogram_and_ignores_tick_files() -> None:
    batch = decode_tick_batch(RAW)
    out = _shard(snapshot_s=60).on_batch(batch.ticks, batch.times)
    created = _created(0, None, 0, 0, 0, None)
    name = "alpha_panda_stage_create_latency_seconds"
    count = _sample(f"{name}_count", stage="signal", input="market.ticks")
    total = _sample(f"{name}_sum", stage="signal", input="market.ticks")
    observe_batch_create_latency(out, batch.ticks, batch.times, batch.positions, None)
    assert _sample(f"{name}_count", stage="signal", input="market.ticks") == count
    observe_batch_create_latency(out, batch.ticks, batch.times, batch.positions, created)
    assert _sample(f"{name}_count", stage="signal", input="market.ticks") == count + 2
    assert _sample(f"{name}_sum", stage="signal", input="market.ticks") - total == 1.0


def test_per_stage_outputs_are_timed_from_the_input_that_caused_them() -> None:
    batch = decode_tick_batch(RAW)
    out = _shard(snapshot_s=60).on_batch(batch.ticks, batch.times)
    signal, validated = out[0].envelope, out[1].envelope
    name = "alpha_panda_stage_create_latency_seconds"
    INPUT_CREATED.put((signal.data.instrument_token, signal.data.timestamp), "unit.ticks", START + 1100 * MS)
    INPUT_CREATED.put(signal.id, "unit.signals", START + 1250 * MS)
    try:
        observe_published(out[0])
        observe_published(out[1])
    finally:
        INPUT_CREATED.clear()
    # The signal (created 1.5 s) from its tick (1.1 s); the decision (1.5 s) from the signal (1.25 s).
    assert _sample(f"{name}_sum", stage="signal", input="unit.ticks") == 0.4
    assert _sample(f"{name}_sum", stage="validated", input="unit.signals") == 0.25
    assert validated.causation_id == signal.id


def test_the_registry_keeps_the_newest_entries_and_skips_missing_times() -> None:
    times = InputCreateTimes(size=2)
    times.put("a", "t", START)
    times.put("b", "t", None)
    times.put("c", "t", START + MS)
    times.put("d", "t", START + 2 * MS)
    assert (times.get("a"), times.get("b")) == (None, None)
    assert times.get("c") == ("t", START + MS)
    assert times.get("d") == ("t", START + 2 * MS)
    assert len(times) == 2


def test_snapshot_timer_counts_each_call() -> None:
    before = _sample("alpha_panda_state_snapshot_seconds_count", step="unit")
    with snapshot_timer("unit").time():
        pass
    with snapshot_timer("unit").time():
        pass
    assert _sample("alpha_panda_state_snapshot_seconds_count", step="unit") == before + 2
