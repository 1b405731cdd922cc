"""The tick's Kafka create time rides the ap-tick-created-ms header through every per-stage step.

Each stage is the per-stage flows' own wiring (decode, stage, to_outbound)
on TestingSource, with one and two workers; what one stage publishes is fed
to the next as the raw messages a Kafka consumer would hand it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow, Stream
from bytewax.testing import TestingSink, TestingSource
from prometheus_client import REGISTRY

from dataflows.account_steps import account_of
from dataflows.accounts import portfolio_stage, risk_stage
from dataflows.clock import event_time_clock
from dataflows.ingest import decode_events, decode_ticks
from dataflows.outbound import to_outbound
from dataflows.pipeline import PipelineParams
from dataflows.signals import context_for, strategy_stage
from dataflows.tick_time import carry, epoch_ms, unstamped
from operators.risk import RiskConfig
from operators.strategy import StrategyConfig
from schemas.codec import RawMessage, decode, encode
from schemas.envelope import FilledEnvelope, Outbound, SignalEnvelope, ValidatedEnvelope
from schemas.headers import TICK_CREATED
from tests.flows.conftest import START, run_with_workers, tick_line

MOMENTUM = StrategyConfig(
    "mom",
    "momentum",
    (256265,),
    (("lookback_period", 2), ("momentum_threshold", 0.01), ("position_size", 10)),
)
MS = timedelta(milliseconds=1)
# Prices: a BUY at second 2 (+2% over the lookback), a SELL at second 4.
PRICES = [100.0, 101.0, 103.0, 103.0, 100.0, 100.0]


def tick_created(second: int) -> int:
    """The Kafka create time of the tick of ``second``: 40 ms after its exchange time."""
    return epoch_ms(START + timedelta(seconds=second) + 40 * MS)


def ticks(without_create_time: int | None = None) -> list[RawMessage]:
    return [
        RawMessage(
            "market.ticks",
            None,
            tick_line(256265, price, second),
            0,
            second,
            None if second == without_create_time else START + timedelta(seconds=second) + 40 * MS,
        )
        for second, price in enumerate(PRICES)
    ]


def run(items: list[Any], workers: int, build: Callable[[Stream[Any]], Stream[Any]]) -> list[Outbound]:
    flow = Dataflow("tick_time")
    out: list[Outbound] = []
    op.output("out", build(op.input("in", flow, TestingSource(items))), TestingSink(out))
    run_with_workers(flow, workers)
    return out


def consumed(published: list[Outbound], garble: set[int] = frozenset()) -> list[RawMessage]:
    """What a consumer of the published messages reads (header values of ``garble`` positions mangled)."""
    raw = []
    for i, o in enumerate(published):
        headers = [(name, b"12x4" if i in garble else value) for name, value in o.headers or ()]
        raw.append(RawMessage(o.topic, o.key.encode(), encode(o.envelope), 0, i, None, headers or None))
    return raw


def strategy_runner(shards: int) -> Callable[[Stream[Any]], Stream[Any]]:
    def build(raw: Stream[Any]) -> Stream[Any]:
        good, _dead = decode_ticks(
            "ingest", raw, service="t", dlq_clock=lambda _m: START, derive_ids=False, stamp_created=True
        )
        context = context_for(
            [MOMENTUM],
            brokers=("paper",),
            mark_interval=timedelta(0),
            clock=event_time_clock,
            service="t",
            shards=shards,
        )
        routed = strategy_stage("strategies", good, context)
        signals = op.filter_map(
            "signals", routed, lambda kv: kv[1] if isinstance(unstamped(kv[1]), SignalEnvelope) else None
        )
        return op.map("publish", signals, to_outbound)

    return build


STEPS = PipelineParams(risk=RiskConfig(max_position_size=10)).account_steps(event_time_clock)


def risk_manager(raw: Stream[Any]) -> Stream[Any]:
    signals, _dead = decode_events("signals_in", raw, SignalEnvelope, service="t", stamp_tick_created=True)
    keyed = op.map("by_account", signals, lambda s: (account_of(unstamped(s)), s))
    return op.map("publish", risk_stage("risk", keyed, STEPS), to_outbound)


def trading_engine(raw: Stream[Any]) -> Stream[Any]:
    validated, _dead = decode_events(
        "validated_in", raw, ValidatedEnvelope, service="t", stamp_tick_created=True
    )
    orders = op.flat_map("execute", validated, lambda v: carry(STEPS.executor.execute, v))
    return op.map("publish", orders, to_outbound)


def portfolio_manager(raw: Stream[Any]) -> Stream[Any]:
    fills, _dead = decode_events("fills_in", raw, FilledEnvelope, service="t", stamp_tick_created=True)
    keyed = op.map("by_account", fills, lambda f: (account_of(unstamped(f)), f))
    return op.map("publish", portfolio_stage("portfolio", keyed, STEPS), to_outbound)


def header_of(message: Outbound) -> int | None:
    if message.headers is None:
        return None
    ((name, value),) = message.headers
    assert name == TICK_CREATED
    return int(value)


def bad_headers(topic: str) -> float:
    labels = {"topic": topic, "header": TICK_CREATED}
    return REGISTRY.get_sample_value("alpha_panda_bad_headers_total", labels) or 0.0


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("shards", [1, 2])
def test_every_stage_copies_the_header_of_the_input_that_caused_it(workers: int, shards: int) -> None:
    signals = run(ticks(), workers, strategy_runner(shards))
    assert [(s.envelope.data.signal_type, header_of(s)) for s in signals] == [
        ("BUY", tick_created(2)),
        ("SELL", tick_created(4)),
    ]
    decisions = run(consumed(signals), workers, risk_manager)
    assert sorted((d.topic, header_of(d)) for d in decisions) == [
        ("paper.signals.validated", tick_created(2)),
        ("paper.signals.validated", tick_created(4)),
    ]
    orders = run(consumed(decisions), workers, trading_engine)
    assert sorted((o.topic, header_of(o)) for o in orders) == [
        ("paper.orders.filled", tick_created(2)),
        ("paper.orders.filled", tick_created(4)),
        ("paper.orders.submitted", tick_created(2)),
        ("paper.orders.submitted", tick_created(4)),
    ]
    fills = sorted((o for o in orders if o.topic == "paper.orders.filled"), key=header_of)
    snapshots = run(consumed(fills), workers, portfolio_manager)
    # A fill's snapshot carries the fill's header; the JSON payload never carries it.
    by_fill = {s.envelope.causation_id: header_of(s) for s in snapshots}
    assert by_fill == {fills[0].envelope.id: tick_created(2), fills[1].envelope.id: tick_created(4)}
    assert all(TICK_CREATED.encode() not in encode(s.envelope) for s in snapshots)
    assert decode(encode(snapshots[0].envelope), "paper.pnl.snapshots") == snapshots[0].envelope


@pytest.mark.parametrize("workers", [1, 2])
def test_without_a_create_time_or_with_a_garbled_header_outputs_go_unstamped(workers: int) -> None:
    # The BUY's tick has no Kafka create time: its signal goes out without the header.
    signals = run(ticks(without_create_time=2), workers, strategy_runner(1))
    assert [header_of(s) for s in signals] == [None, tick_created(4)]
    decisions = run(consumed(signals), workers, risk_manager)
    assert sorted((d.envelope.data.timestamp, header_of(d)) for d in decisions) == [
        (START + timedelta(seconds=2), None),
        (START + timedelta(seconds=4), tick_created(4)),
    ]
    # A garbled header is counted and ignored: the signal is still decided, unstamped.
    before = bad_headers("paper.signals.raw")
    again = run(consumed(signals, garble={1}), workers, risk_manager)
    assert bad_headers("paper.signals.raw") == before + 1
    assert [header_of(d) for d in again] == [None, None]
    assert len(again) == len(decisions) == 2


@pytest.mark.parametrize("workers", [1, 2])
def test_decoding_without_stamping_ignores_the_header(workers: int) -> None:
    # The all-in-one flow reads zerodha.orders.* with decode_events too: it must get bare envelopes.
    signals = run(ticks(), workers, strategy_runner(1))
    raw = consumed(signals)
    assert all(r.headers for r in raw)

    def decode_only(stream: Stream[Any]) -> Stream[Any]:
        return decode_events("signals_in", stream, SignalEnvelope, service="t")[0]

    decoded = run(raw, workers, decode_only)
    assert sorted(type(d).__name__ for d in decoded) == ["SignalEnvelope", "SignalEnvelope"]
    assert {d.id for d in decoded} == {s.envelope.id for s in signals}
