"""Redelivered events change no account: risk and books apply each once."""

from __future__ import annotations

from datetime import timedelta

from dataflows.account_steps import RiskStep
from dataflows.clock import event_time_clock
from operators.risk import RiskConfig, RiskFilter
from schemas.codec import decode_tick
from schemas.envelope import envelop
from schemas.events import TradingSignal
from tests.flows.conftest import START, tick_line


def test_a_redelivered_signal_is_decided_once() -> None:
    step = RiskStep(RiskFilter(RiskConfig(max_position_size=150)), event_time_clock, "t")
    tick = decode_tick(tick_line(1, 100.0, 0))
    signal = TradingSignal("s", 1, "BUY", 100, 100.0, START, 0.5)
    envelope = envelop(signal, id="sig-1", ts=START, broker="paper", cause=tick, source="t", key="s:1")
    first = step.on_signal(envelope)
    assert first is not None
    assert first.data.risk_checks["max_position_size"] is True
    assert step.on_signal(envelope) is None  # the same signal again: no second position
    assert step.state.positions == {1: 100}
    other = envelop(
        TradingSignal("s", 1, "BUY", 100, 100.0, START + timedelta(seconds=1), 0.5),
        id="sig-2",
        ts=START,
        broker="paper",
        cause=tick,
        source="t",
        key="s:1",
    )
    rejected = step.on_signal(other)
    assert rejected is not None
    assert rejected.data.risk_checks["max_position_size"] is False
