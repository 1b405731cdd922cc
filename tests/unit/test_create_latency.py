"""Latency from a tick's Kafka create time, and snapshot timing, without an engine or a broker."""

from __future__ import annotations

from datetime import datetime, timedelta

import msgspec
import pytest
from prometheus_client import REGISTRY

from dataflows.metrics import (
    batch_create_latencies,
    observe_batch_create_latency,
    observe_published,
    snapshot_timer,
)
from dataflows.outbound import to_outbound
from dataflows.tick_time import Stamped, epoch_ms
from operators.execution import SimulatedExecution
from operators.fills import FillConfig, FillSimulator
from operators.portfolio import Portfolio, PortfolioConfig
from operators.risk import RiskConfig, RiskFilter
from operators.shard import ShardConfig, TradingShard
from operators.strategy import StrategyConfig
from schemas.codec import dead_letter, decode_tick_batch
from schemas.headers import TICK_CREATED, HeaderError, tick_created_headers, tick_created_ms
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


def test_per_stage_outputs_are_timed_from_their_ticks_header() -> None:
    batch = decode_tick_batch(RAW)
    out = _shard(snapshot_s=60).on_batch(batch.ticks, batch.times)
    signal, validated, submitted = out[0].envelope, out[1].envelope, out[2].envelope
    name = "alpha_panda_stage_create_latency_seconds"
    ticks = {"input": "market.ticks"}
    before = {s: _sample(f"{name}_sum", stage=s, **ticks) for s in ("signal", "validated", "submitted")}
    counts = {s: _sample(f"{name}_count", stage=s, **ticks) for s in ("signal", "validated")}
    # The tick (exchange time 1 s) was created at 1.1 s; the signal and decision at 1.5 s.
    created = epoch_ms(START + 1100 * MS)
    observe_published(to_outbound(Stamped(signal, created)))
    observe_published(to_outbound(Stamped(validated, created)))
    observe_published(to_outbound(Stamped(submitted, created)))  # submitted is not a timed stage
    observe_published(to_outbound(validated))  # no header (a replay): not timed
    assert _sample(f"{name}_sum", stage="signal", **ticks) - before["signal"] == pytest.approx(0.4)
    assert _sample(f"{name}_sum", stage="validated", **ticks) - before["validated"] == pytest.approx(0.4)
    assert _sample(f"{name}_count", stage="signal", **ticks) == counts["signal"] + 1
    assert _sample(f"{name}_count", stage="validated", **ticks) == counts["validated"] + 1
    assert _sample(f"{name}_sum", stage="submitted", **ticks) == before["submitted"] == 0.0


def test_a_stamped_event_goes_out_with_the_header_and_a_bare_one_without() -> None:
    batch = decode_tick_batch(RAW)
    signal = _shard(snapshot_s=60).on_batch(batch.ticks, batch.times)[0].envelope
    bare = to_outbound(signal)
    stamped = to_outbound(Stamped(signal, 1_704_166_501_100))
    assert bare.headers is None
    assert stamped.headers == (("ap-tick-created-ms", b"1704166501100"),)
    assert msgspec.structs.replace(stamped, headers=None) == bare
    letter = dead_letter(
        topic="paper.signals.validated",
        key=b"mom",
        value=b"{}",
        error_type="transient",
        error_class="Timeout",
        error_message="live_order: timed out",
        service_name="t",
        dlq_timestamp=START,
    )
    # Dead letters never carry it: `dlq replay` republishes only their payload.
    assert to_outbound(Stamped(letter, 1)).headers is None


def test_the_header_is_ascii_epoch_milliseconds_and_reads_back() -> None:
    assert tick_created_headers(1_704_166_501_100) == ((TICK_CREATED, b"1704166501100"),)
    assert tick_created_ms("t", [*tick_created_headers(7), (TICK_CREATED, b"8")]) == 7
    assert tick_created_ms("t", [("alpha-panda-replayed-from", b"x.dlq:0:1"), (TICK_CREATED, "42")]) == 42
    assert tick_created_ms("t", None) is None
    assert tick_created_ms("t", []) is None
    assert tick_created_ms("t", [("alpha-panda-replayed-from", b"x.dlq:0:1")]) is None


@pytest.mark.parametrize(
    "value", [b"", b"-1", b"12x4", b"1.5", b" 12", "\u0661\u0662".encode(), b"9" * 17, None]
)
def test_a_garbled_header_is_a_header_error_naming_it(value: bytes | None) -> None:
    with pytest.raises(HeaderError) as caught:
        tick_created_ms("paper.signals.raw", [(TICK_CREATED, value)])
    assert caught.value.topic == "paper.signals.raw"
    assert caught.value.reason.startswith(
        "header ap-tick-created-ms must be 1 to 16 ASCII digits (epoch ms), got "
    )


def test_snapshot_timer_counts_each_call() -> None:
    before = _sample("alpha_panda_state_snapshot_seconds_count", step="unit")
    with snapshot_timer("unit").time():
        pass
    with snapshot_timer("unit").time():
        pass
    assert _sample("alpha_panda_state_snapshot_seconds_count", step="unit") == before + 2


def _published_samples() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    names = {
        "alpha_panda_events_total",
        "alpha_panda_signals_total",
        "alpha_panda_signals_validated_total",
        "alpha_panda_signals_rejected_total",
        "alpha_panda_orders_total",
        "alpha_panda_fills_total",
        "alpha_panda_stage_latency_seconds_count",
    }
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in REGISTRY.collect()
        for s in family.samples
        if s.name in names
    }


def _moved(
    before: dict[tuple[str, tuple[tuple[str, str], ...]], float],
    after: dict[tuple[str, tuple[tuple[str, str], ...]], float],
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        key: value - before.get(key, 0.0) for key, value in after.items() if value != before.get(key, 0.0)
    }


def test_a_batch_observed_at_once_moves_every_metric_as_its_messages_one_by_one() -> None:
    batch = decode_tick_batch(RAW)
    out = _shard(snapshot_s=60).on_batch(batch.ticks, batch.times)
    assert len(out) == 8  # buy and sell: signal, validated, submitted, filled each
    start = _published_samples()
    for message in out:
        observe_published(message)
    one_by_one = _moved(start, middle := _published_samples())
    observe_published(list(out))
    at_once = _moved(middle, _published_samples())
    assert at_once == one_by_one
    events = {
        dict(labels)["topic"]: n
        for (name, labels), n in at_once.items()
        if name == "alpha_panda_events_total"
    }
    assert events == {
        "paper.signals.raw": 2,
        "paper.signals.validated": 2,
        "paper.orders.submitted": 2,
        "paper.orders.filled": 2,
    }
    assert at_once["alpha_panda_orders_total", (("broker", "paper"), ("stage", "filled"))] == 2
