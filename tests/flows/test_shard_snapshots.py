"""The strategy shard's recovery snapshots: complete, current, and never aliased."""

from __future__ import annotations

import pickle
from datetime import timedelta

from dataflows.clock import event_time_clock
from dataflows.signals import _ShardLogic, context_for
from operators.strategy import StrategyConfig
from schemas.codec import decode_tick
from tests.flows.conftest import tick_line

CONFIG = StrategyConfig.from_mapping(
    {"id": "mom", "strategy_type": "momentum", "instruments": [1, 2], "parameters": {"lookback_period": 3}}
)


def logic(resume=None) -> _ShardLogic:
    context = context_for(
        [CONFIG], brokers=("paper",), mark_interval=timedelta(seconds=1), clock=event_time_clock, service="t"
    )
    return _ShardLogic(context, resume)


def test_snapshots_copy_changed_instruments_and_never_alias() -> None:
    shard = logic()
    shard.on_item(decode_tick(tick_line(1, 100.0, 0)))
    shard.on_item(decode_tick(tick_line(2, 50.0, 0)))
    first = shard.snapshot()
    frozen = pickle.dumps(first)
    shard.on_item(decode_tick(tick_line(1, 101.0, 1)))
    assert pickle.dumps(first) == frozen, "a later tick changed an earlier snapshot"
    second = shard.snapshot()
    assert list(second.instruments[1].strategies.strategies["mom"].window()) == [100.0, 101.0]
    assert second.instruments[2] is first.instruments[2], "an untouched instrument is not copied again"


def test_a_resumed_shard_continues_where_it_stopped() -> None:
    shard = logic()
    for second, price in enumerate([100.0, 100.0]):
        shard.on_item(decode_tick(tick_line(1, price, second)))
    resumed = logic(pickle.loads(pickle.dumps(shard.snapshot())))
    out, _ = resumed.on_item(decode_tick(tick_line(1, 102.0, 2)))
    signals = [item for _, item in out if hasattr(item, "data")]
    assert [s.data.signal_type for s in signals] == ["BUY"]
    restored = resumed.snapshot()
    assert list(restored.instruments[1].strategies.strategies["mom"].window()) == [100.0, 100.0, 102.0]
