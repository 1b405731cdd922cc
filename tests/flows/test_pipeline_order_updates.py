"""The all-in-one wiring with live Zerodha orders: later fills reach the shard of their strategy."""

from __future__ import annotations

from datetime import UTC, datetime

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource

from dataflows.clock import event_time_clock
from dataflows.execution_routes import ExecutionRoute
from dataflows.pipeline import PipelineParams, build_pipeline, shard_of
from operators.errors import ConfigError
from operators.strategy import StrategyConfig
from schemas.codec import RawBatch
from schemas.envelope import FilledEnvelope, Outbound
from tests.flows.conftest import run_with_workers, tick_line
from tests.order_updates import kite_filled

EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
PARAMETERS = (("lookback_period", 2), ("momentum_threshold", 0.01), ("position_size", 10))
# "alpha" and "beta" live on different shards of two (crc32), so routing by strategy is exercised.
CONFIGS = [
    StrategyConfig("alpha", "momentum", (256265,), PARAMETERS, zerodha_trading_enabled=True),
    StrategyConfig("beta", "momentum", (257265,), PARAMETERS, zerodha_trading_enabled=True),
]
LIVE = ExecutionRoute("live", live_placer=lambda _order_id, _signal: "OPEN")


def fill(strategy: str, token: int, quantity: int, price: float) -> FilledEnvelope:
    return kite_filled(f"kite-{strategy}", strategy, token, quantity, price, 2.0, EPOCH)


def run(workers: int, updates: list[FilledEnvelope]) -> list[Outbound]:
    lines = [
        tick_line(token, price, s) for s, price in enumerate([100.0, 102.0]) for token in (256265, 257265)
    ]
    flow = Dataflow("order_updates_test")
    raw = op.input("ticks", flow, TestingSource([RawBatch("market.ticks", lines, list(range(len(lines))))]))
    params = PipelineParams(brokers=("zerodha",), shards=2, zerodha_route=LIVE)
    batches: list[list[Outbound]] = []
    published = build_pipeline(
        raw,
        CONFIGS,
        params,
        clock=event_time_clock,
        dlq_clock=lambda _msg: EPOCH,
        order_updates=op.input("order_updates", flow, TestingSource(updates)),
    )
    op.output("out", published, TestingSink(batches))
    run_with_workers(flow, workers)
    return [message for batch in batches for message in batch]


@pytest.mark.parametrize("workers", [1, 2])
def test_real_fills_move_the_books_of_their_strategy_on_its_shard(workers: int) -> None:
    assert (shard_of("alpha", 2), shard_of("beta", 2)) == (0, 1)
    out = run(workers, [fill("alpha", 256265, 10, 101.5), fill("beta", 257265, 7, 103.0)])
    topics = [m.topic for m in out]
    assert topics.count("zerodha.orders.submitted") == 2
    assert "zerodha.orders.filled" not in topics  # the fills were on their topic already
    positions = {
        m.envelope.data.strategy_id: {
            k: (p.quantity, p.average_price) for k, p in m.envelope.data.positions.items()
        }
        for m in out
        if m.topic == "zerodha.pnl.snapshots"
    }
    assert positions == {"alpha": {"256265": (10, 101.5)}, "beta": {"257265": (7, 103.0)}}


@pytest.mark.parametrize("workers", [1, 2])
def test_without_fills_the_live_books_do_not_move(workers: int) -> None:
    out = run(workers, [])
    assert [m.topic for m in out].count("zerodha.orders.submitted") == 2
    assert not [m for m in out if m.topic == "zerodha.pnl.snapshots"]


@pytest.mark.parametrize("workers", [1, 2])
def test_a_fill_of_a_strategy_the_flow_does_not_run_is_dead_lettered(workers: int) -> None:
    out = run(workers, [fill("gamma", 256265, 10, 101.5)])
    [letter] = [m for m in out if m.topic.endswith(".dlq")]
    assert letter.topic == "zerodha.orders.filled.dlq"
    assert letter.envelope.data.failure_info.error_message == (
        "order update kite-gamma: no zerodha account for strategy 'gamma' in this flow; not applied"
    )


def test_instrument_groups_refuse_live_order_updates_loudly() -> None:
    flow = Dataflow("order_updates_grouped")
    raw = op.input("ticks", flow, TestingSource([RawBatch("market.ticks", [], [])]))
    updates = op.input("updates", flow, TestingSource([fill("alpha", 256265, 10, 101.0)]))
    params = PipelineParams(brokers=("zerodha",), groups=2, zerodha_route=LIVE)
    with pytest.raises(
        ConfigError, match="INSTRUMENT_GROUPS > 1 cannot yet apply live Zerodha order updates"
    ):
        build_pipeline(
            raw, CONFIGS, params, clock=event_time_clock, dlq_clock=lambda _msg: EPOCH, order_updates=updates
        )
