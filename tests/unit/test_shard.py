"""The trading shard without an engine: ticks in, messages out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from operators.execution import SimulatedExecution, order_id_of
from operators.fills import FillConfig, FillSimulator
from operators.portfolio import Portfolio, PortfolioConfig
from operators.risk import RiskConfig, RiskFilter
from operators.shard import ShardConfig, TradingShard
from operators.strategy import StrategyConfig
from schemas.codec import decode_tick_batch
from schemas.envelope import SCHEMA_VERSION, FailedEnvelope, ValidatedEnvelope, event_id
from schemas.events import OrderFailed
from tests.flows.conftest import tick_line

MOMENTUM = StrategyConfig(
    "mom",
    "momentum",
    (256265,),
    (("lookback_period", 2), ("momentum_threshold", 0.01), ("position_size", 10)),
)
T0 = datetime(2024, 1, 2, 3, 45, tzinfo=UTC)


def _clock(at: datetime) -> datetime:
    return at


def shard(execute=None, halts=None, interval_s: float = 10.0) -> TradingShard:
    simulated = SimulatedExecution(FillSimulator(FillConfig()), _clock, "t")
    return TradingShard(
        [MOMENTUM],
        ShardConfig(brokers=("paper",), snapshot_interval=timedelta(seconds=interval_s), service="t"),
        RiskFilter(RiskConfig(max_position_size=10)),
        Portfolio(PortfolioConfig()),
        execute or (lambda validated: simulated.execute(validated, "paper")),
        _clock,
        halts=halts,
    )


def run(logic: TradingShard, prices: list[tuple[float, int]]) -> list:
    batch = decode_tick_batch([tick_line(256265, price, second) for price, second in prices])
    return [m.topic for m in logic.on_batch(batch.ticks, batch.times)], logic


def test_a_rise_buys_once_and_a_fall_sells() -> None:
    topics, _ = run(shard(), [(100.0, 0), (102.0, 1), (103.0, 2), (100.0, 3)])
    assert topics == [
        "paper.signals.raw",
        "paper.signals.validated",
        "paper.orders.submitted",
        "paper.orders.filled",
        "paper.signals.raw",
        "paper.signals.validated",
        "paper.orders.submitted",
        "paper.orders.filled",
    ]


def test_a_halted_account_rejects_with_the_halted_rule() -> None:
    logic = shard(halts=lambda broker, strategy: f"halted: {broker}/{strategy} is halted: test")
    batch = decode_tick_batch([tick_line(256265, p, s) for p, s in [(100.0, 0), (102.0, 1)]])
    out = logic.on_batch(batch.ticks, batch.times)
    rejected = [m.envelope.data for m in out if m.topic == "paper.signals.rejected"]
    assert [r.rejection_reason for r in rejected] == ["halted: paper/mom is halted: test"]
    assert rejected[0].risk_checks["halted"] is False
    assert not [m for m in out if m.topic.startswith("paper.orders")]


def test_a_failed_order_releases_the_position_so_the_next_buy_fits() -> None:
    def fail(validated: ValidatedEnvelope) -> list:
        signal = validated.data.original_signal
        failed = OrderFailed(
            order_id=order_id_of(validated),
            strategy_id=signal.strategy_id,
            instrument_token=signal.instrument_token,
            side=signal.signal_type,
            quantity=validated.data.validated_quantity,
            timestamp=validated.data.timestamp,
            broker="paper",
            execution_mode="live",
            error_message="refused",
        )
        return [
            FailedEnvelope(
                id=event_id("order_failed", failed.order_id),
                ts=failed.timestamp,
                broker="paper",
                correlation_id=validated.correlation_id,
                causation_id=validated.id,
                source="t",
                version=SCHEMA_VERSION,
                key=validated.key,
                data=failed,
            )
        ]

    logic = shard(execute=fail)
    # BUY 10 (limit 10) fails; the next BUY edge would exceed the limit had it stayed booked.
    topics, _ = run(logic, [(100.0, 0), (102.0, 1), (102.0, 2), (104.0, 3)])
    assert topics.count("paper.orders.failed") == 2
    assert "paper.signals.rejected" not in topics
    assert logic.state.accounts["paper:mom"].risk.positions[256265] == 0


def test_snapshots_at_most_once_per_interval_and_once_at_the_end() -> None:
    logic = shard(interval_s=10)
    prices = [(100.0, 0), (102.0, 1)] + [(102.0 + s / 100, s) for s in range(2, 40)]
    batch = decode_tick_batch([tick_line(256265, p, s) for p, s in prices])
    out = logic.on_batch(batch.ticks, batch.times) + logic.flush()
    stamps = [m.envelope.data.timestamp for m in out if m.topic == "paper.pnl.snapshots"]
    start = datetime(2024, 1, 2, 3, 45, tzinfo=UTC)
    assert stamps == [start + timedelta(seconds=s) for s in (10, 20, 30, 39)]
    assert logic.flush() == []  # nothing owed twice


def test_a_lone_tick_beyond_the_skew_is_dead_lettered_and_trading_goes_on() -> None:
    logic = shard()
    lines = [tick_line(256265, 100.0, 0), tick_line(256265, 100.0, 86_401)]
    lines += [tick_line(256265, 102.0 + s / 100, s) for s in range(1, 102)]
    batch = decode_tick_batch(lines)
    out = logic.on_batch(batch.ticks, batch.times)
    letters = [m for m in out if m.topic == "market.ticks.dlq"]
    assert len(letters) == 1
    reason = letters[0].envelope.data.failure_info.error_message
    assert reason.endswith(
        "after the newest tick seen (2024-01-02T03:46:41+00:00) and no other tick followed it there"
    )
    assert "paper.signals.raw" in [m.topic for m in out]  # the good ticks still trade


def test_a_held_tick_is_dead_lettered_at_the_end_of_input() -> None:
    logic = shard()
    batch = decode_tick_batch([tick_line(256265, 100.0, 0), tick_line(256265, 100.0, 86_401)])
    assert [m.topic for m in logic.on_batch(batch.ticks, batch.times)] == []
    assert [m.topic for m in logic.flush()] == ["market.ticks.dlq"]


def test_a_gap_in_the_market_longer_than_the_skew_moves_time_on() -> None:
    logic = shard()
    day = 86_400
    lines = [tick_line(256265, 100.0, 0), tick_line(256265, 100.5, 1)]
    lines += [
        tick_line(256265, 102.0, 3 * day),
        tick_line(256265, 104.0, 3 * day + 1),
        tick_line(256265, 105.0, 3 * day + 2),
    ]
    batch = decode_tick_batch(lines)
    out = logic.on_batch(batch.ticks, batch.times)
    assert "market.ticks.dlq" not in [m.topic for m in out]
    buys = [m.envelope.data for m in out if m.topic == "paper.signals.raw"]
    assert [(b.signal_type, b.price) for b in buys] == [("BUY", 102.0)]
    assert logic.state.newest == datetime(2024, 1, 5, 3, 45, 2, tzinfo=UTC)


def test_with_a_zero_interval_every_tick_of_a_second_is_a_boundary() -> None:
    # Ticks of one second share one decoded datetime; each is still a boundary of its own.
    logic = shard(interval_s=0)
    prices = [(100.0, 0), (102.0, 1), (102.0, 1), (102.0, 1)]
    batch = decode_tick_batch([tick_line(256265, p, s) for p, s in prices])
    assert batch.times[1] is batch.times[3]
    out = logic.on_batch(batch.ticks, batch.times) + logic.flush()
    snapshots = [m.envelope.data for m in out if m.topic == "paper.pnl.snapshots"]
    assert [s.timestamp for s in snapshots] == [T0 + timedelta(seconds=1)] * 2
    assert [m.topic for m in out].index("paper.orders.filled") < [m.topic for m in out].index(
        "paper.pnl.snapshots"
    )


def test_ticks_of_one_second_beyond_the_skew_are_held_together_and_confirm_the_jump() -> None:
    logic = shard()
    day = 86_400
    lines = [tick_line(256265, 100.0, 0)] + [tick_line(256265, 100.0 + 2 * i, 3 * day) for i in range(4)]
    batch = decode_tick_batch(lines)
    assert batch.times[1] is batch.times[4]
    out = logic.on_batch(batch.ticks, batch.times)
    assert "market.ticks.dlq" not in [m.topic for m in out]
    buys = [m.envelope.data for m in out if m.topic == "paper.signals.raw"]
    assert [(b.signal_type, b.price, b.timestamp) for b in buys] == [("BUY", 102.0, T0 + timedelta(days=3))]
    assert logic.state.newest == T0 + timedelta(days=3)
    assert logic.state.held == []


def test_an_instrument_nobody_traded_is_traded_once_a_reload_adds_a_strategy_for_it() -> None:
    logic = shard()
    other = 738561
    batch = decode_tick_batch([tick_line(other, p, s) for p, s in [(100.0, 0), (102.0, 1), (104.0, 2)]])
    assert [m.topic for m in logic.on_batch(batch.ticks, batch.times)] == []
    assert other not in logic.state.instruments
    logic.reload([MOMENTUM, StrategyConfig("mom2", "momentum", (other,), MOMENTUM.parameters)])
    batch = decode_tick_batch([tick_line(other, p, s) for p, s in [(100.0, 3), (102.0, 4)]])
    out = logic.on_batch(batch.ticks, batch.times)
    assert [(m.topic, m.envelope.data.strategy_id) for m in out if m.topic == "paper.signals.raw"] == [
        ("paper.signals.raw", "mom2")
    ]
