"""Failure handling without servers: live order retries, DLQ replay planning, codec edge cases."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from alpha_panda.dlq import DlqCommandError, plan_replay, replay_dlq, summarize
from connectors.dlq import DeadLetterRecord
from connectors.kafka.records import KafkaRecord
from dataflows.execution_routes import ExecutionRoute, Executor
from dataflows.outbound import to_outbound
from operators.failures import RetryConfig, RetryLogic
from operators.fills import FillConfig, FillSimulator
from schemas.codec import dead_letter, decode_tick
from schemas.envelope import DlqEnvelope, FailedEnvelope, SubmittedEnvelope, ValidatedEnvelope, envelop
from schemas.errors import DecodeError
from tests.unit.test_fills import validated

T0 = datetime(2024, 1, 2, 9, 15, tzinfo=UTC)


class BrokerDown(ConnectionError):
    pass


class Refused(Exception):
    pass


class HttpError(Exception):
    def __init__(self, status_code: int) -> None:
        super().__init__(f"HTTP {status_code}")
        self.status_code = status_code


def validated_envelope() -> ValidatedEnvelope:
    return envelop(  # type: ignore[return-value]
        validated(), id="v-1", ts=T0, broker="zerodha", cause=None, source="test", key="mom1"
    )


def executor(placer, slept: list[float]) -> Executor:
    logic = RetryLogic(RetryConfig.from_settings(base_s=0.1, max_s=1.0, budget_s=1.0), random.Random(42))
    route = ExecutionRoute("live", placer, retry=logic, sleep=slept.append)
    return Executor(FillSimulator(FillConfig()), {"zerodha": route}, lambda _t: T0, "test")


def test_live_order_rides_out_a_broker_blip() -> None:
    calls: list[str] = []

    def placer(order_id: str, _data: object) -> str:
        calls.append(order_id)
        if len(calls) < 3:
            msg = "connection reset"
            raise BrokerDown(msg)
        return "OPEN"

    slept: list[float] = []
    [order] = executor(placer, slept).execute(validated_envelope())
    assert isinstance(order, SubmittedEnvelope)
    assert order.data.status == "OPEN"
    assert len(set(calls)) == 1, "the same order id on every try"
    assert slept == pytest.approx([0.06394267984578837, 0.005002151044533387])


def test_live_order_dead_lettered_when_the_broker_stays_down() -> None:
    def placer(_order_id: str, _data: object) -> str:
        msg = "connection refused"
        raise BrokerDown(msg)

    [letter] = executor(placer, []).execute(validated_envelope())
    assert isinstance(letter, DlqEnvelope)
    record = letter.data
    assert record.dlq_metadata.original_topic == "zerodha.signals.validated"
    assert record.failure_info.error_type == "infrastructure"
    assert record.failure_info.retry_count >= 1
    assert record.replay_metadata.can_replay
    assert to_outbound(letter).topic == "zerodha.signals.validated.dlq"


def test_live_order_refused_is_an_order_failed_and_auth_is_parked() -> None:
    def refused(_order_id: str, _data: object) -> str:
        msg = "insufficient margin"
        raise Refused(msg)

    [failed] = executor(refused, []).execute(validated_envelope())
    assert isinstance(failed, FailedEnvelope)
    assert failed.data.error_message == "Refused: insufficient margin"

    def unauthorised(_order_id: str, _data: object) -> str:
        raise HttpError(403)

    slept: list[float] = []
    [letter] = executor(unauthorised, slept).execute(validated_envelope())
    assert isinstance(letter, DlqEnvelope)
    assert letter.data.failure_info.error_type == "authentication"
    assert not letter.data.replay_metadata.can_replay
    assert slept == [], "authentication failures are never retried"


def test_invalid_utf8_inside_a_string_is_a_decode_error() -> None:
    raw = (
        b'{"type": "market_tick", "data": {"instrument_token": 1, "last_price": 1.0,'
        b' "timestamp": "2024-01-02T09:15:00+05:30", "symbol": "\xff"}}'
    )
    with pytest.raises(DecodeError, match="invalid UTF-8 in field data.symbol"):
        decode_tick(raw)


def _record(offset: int, error_type: str, at: datetime) -> DeadLetterRecord:
    letter = dead_letter(
        topic="paper.orders.filled",
        key="mom1",
        value=b'{"x": %d}' % offset,
        error_type=error_type,  # type: ignore[arg-type]
        error_class="E",
        error_message="m",
        service_name="t",
        dlq_timestamp=at,
        offset=offset,
    )
    return DeadLetterRecord(KafkaRecord("paper.orders.filled.dlq", 0, offset, b"mom1", b"", 0), letter)


def test_replay_plan_skips_poison_old_and_beyond_limit() -> None:
    late = datetime(2024, 1, 3, tzinfo=UTC)
    records = [
        _record(0, "infrastructure", T0),
        _record(1, "poison", late),
        _record(2, "transient", late),
        _record(3, "rate_limit", late),
        _record(4, "infrastructure", late),
        DeadLetterRecord(KafkaRecord("paper.orders.filled.dlq", 0, 5, None, b"junk", 0), None, "bad"),
    ]
    chosen, result = plan_replay("paper.orders.filled.dlq", records, limit=2, since=late)
    assert [r.record.offset for r in chosen] == [2, 3]
    assert dict(result.skipped) == {
        "older than --since": 1,
        "poison: not replayable": 1,
        "beyond --limit": 1,
        "not a dlq_record": 1,
    }
    summary = summarize("paper.orders.filled.dlq", records)
    assert summary.total == 6
    assert summary.unreadable == 1
    assert {(g.error_type, g.replayable, g.count) for g in summary.groups} == {
        ("infrastructure", True, 2),
        ("poison", False, 1),
        ("rate_limit", True, 1),
        ("transient", True, 1),
    }


def test_replay_refuses_a_topic_that_is_not_a_dlq() -> None:
    with pytest.raises(DlqCommandError, match="not a dead-letter topic"):
        replay_dlq("127.0.0.1:1", "paper.orders.filled")
