"""Per-stage risk releases what a failed order booked (orders.failed, possibly redelivered)."""

from __future__ import annotations

from datetime import UTC, datetime

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource

from dataflows.account_steps import Mark
from dataflows.accounts import risk_stage
from dataflows.clock import event_time_clock
from dataflows.pipeline import PipelineParams
from operators.execution import order_id_of
from operators.risk import RiskConfig
from schemas.envelope import SCHEMA_VERSION, FailedEnvelope, SignalEnvelope, ValidatedEnvelope, event_id
from schemas.events import OrderFailed, TradingSignal
from tests.flows.conftest import run_with_workers

T0 = datetime(2024, 1, 2, 3, 45, tzinfo=UTC)
ACCOUNT = "paper:mom"


def signal(n: int) -> SignalEnvelope:
    data = TradingSignal(
        strategy_id="mom",
        instrument_token=256265,
        signal_type="BUY",
        quantity=10,
        price=100.0,
        timestamp=T0,
        confidence=1.0,
    )
    ident = event_id("trading_signal", n)
    return SignalEnvelope(
        id=ident,
        ts=T0,
        broker="paper",
        correlation_id=ident,
        causation_id=None,
        source="t",
        version=SCHEMA_VERSION,
        key="mom:256265",
        data=data,
    )


def failed_for(validated_of_signal: SignalEnvelope) -> FailedEnvelope:
    # The risk decision's id derives from the signal's, and the order id from the decision's.
    decision = ValidatedEnvelope(
        id=event_id("risk_decision", validated_of_signal.id),
        ts=T0,
        broker="paper",
        correlation_id=validated_of_signal.correlation_id,
        causation_id=validated_of_signal.id,
        source="t",
        version=SCHEMA_VERSION,
        key="mom",
        data=None,  # type: ignore[arg-type]
    )
    data = OrderFailed(
        order_id=order_id_of(decision),
        strategy_id="mom",
        instrument_token=256265,
        side="BUY",
        quantity=10,
        timestamp=T0,
        broker="paper",
        execution_mode="live",
        error_message="refused by the broker",
    )
    return FailedEnvelope(
        id=event_id("order_failed", data.order_id),
        ts=T0,
        broker="paper",
        correlation_id="c",
        causation_id=decision.id,
        source="t",
        version=SCHEMA_VERSION,
        key="mom",
        data=data,
    )


def decisions(items: list, workers: int) -> list[str]:
    flow = Dataflow("risk_release")
    steps = PipelineParams(risk=RiskConfig(max_position_size=10)).account_steps(event_time_clock)
    out: list = []
    stream = op.input("in", flow, TestingSource([(ACCOUNT, item) for item in items]))
    op.output("out", risk_stage("risk", stream, steps), TestingSink(out))
    run_with_workers(flow, workers)
    return [type(d).__name__ for d in out]


@pytest.mark.parametrize("workers", [0, 1, 2])
def test_a_failed_order_frees_the_position_limit_for_the_next_signal(workers: int) -> None:
    first, second, third = signal(1), signal(2), signal(3)
    mark = Mark(ACCOUNT, 256265, 100.0, T0, "tick", "tick")
    failure = failed_for(first)
    # Limit 10: the second BUY fits only because the first order failed;
    # the redelivered failure releases nothing more, so the third is rejected.
    got = decisions([mark, first, failure, second, failure, third], workers)
    assert got == ["ValidatedEnvelope", "ValidatedEnvelope", "RejectedEnvelope"]


def test_without_a_failure_the_second_signal_is_rejected() -> None:
    mark = Mark(ACCOUNT, 256265, 100.0, T0, "tick", "tick")
    assert decisions([mark, signal(1), signal(2)], 0) == ["ValidatedEnvelope", "RejectedEnvelope"]
