"""Error classification and retry policy, with exact backoff numbers from a seeded RNG."""

from __future__ import annotations

import random

import pytest

from operators.errors import OperatorError
from operators.failures import (
    RetryConfig,
    RetryExhaustedError,
    RetryLogic,
    RetryPolicy,
    classify,
    retry_after_s,
    retry_call,
)
from schemas.errors import DecodeError


class HttpError(Exception):
    def __init__(self, status_code: int, retry_after: float | None = None) -> None:
        super().__init__(f"HTTP {status_code}")
        self.status_code = status_code
        self.retry_after = retry_after


class OperationalError(Exception):
    """Named like psycopg's: the default rules match class names, not modules."""


class ClientError(Exception):
    pass


class SinkError(Exception):
    pass


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (DecodeError("market.ticks", "bad"), "poison"),
        (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"), "poison"),
        (ConnectionRefusedError("refused"), "infrastructure"),
        (ConnectionResetError("reset"), "infrastructure"),
        (OperationalError("server closed the connection"), "infrastructure"),
        (TimeoutError("timed out"), "transient"),
        (HttpError(429), "rate_limit"),
        (HttpError(401), "authentication"),
        (HttpError(403), "authentication"),
        (HttpError(503), "transient"),
        (HttpError(400), "business"),
        (ValueError("insufficient funds"), "business"),
    ],
)
def test_default_classification(error: BaseException, expected: str) -> None:
    assert classify(error) == expected


def test_connector_rules_win_and_causes_are_followed() -> None:
    assert classify(ClientError("busy"), {"ClientError": "transient"}) == "transient"
    assert classify(ClientError("x"), [(lambda e: "busy" in str(e), "transient")]) == "business"
    try:
        try:
            msg = "refused"
            raise ConnectionRefusedError(msg)
        except ConnectionRefusedError as inner:
            msg = "write failed"
            raise SinkError(msg) from inner
    except SinkError as outer:
        assert classify(outer) == "infrastructure"
        assert classify(outer, {"SinkError": "poison"}) == "poison"
    assert classify(ValueError("?"), default="transient") == "transient"


def test_retry_after_is_read_from_the_error() -> None:
    assert retry_after_s(HttpError(429, retry_after=2.5)) == 2.5
    assert retry_after_s(HttpError(429)) is None


def test_full_jitter_backoff_exact_numbers() -> None:
    # random.Random(42).random() -> 0.6394..., 0.0250..., 0.2750..., 0.2232..., 0.7364...
    logic = RetryLogic(
        RetryConfig.from_settings(max_attempts_transient=4, base_s=0.1, max_s=0.5), random.Random(42)
    )
    state = logic.new_state()
    delays = [logic.on_failure(state, "transient") for _ in range(4)]
    # ceilings 0.1, 0.2, 0.4 then the 4th failure is the last attempt
    assert delays == pytest.approx([0.06394267984578837, 0.005002151044533387, 0.1100117273476477, None])
    assert state.attempts == 4
    assert state.waited_s == pytest.approx(0.06394267984578837 + 0.005002151044533387 + 0.1100117273476477)


def test_ceiling_caps_the_exponential() -> None:
    policy = RetryPolicy(max_attempts=10, base_s=0.1, max_s=0.5)
    assert [policy.ceiling(n) for n in range(1, 6)] == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5])
    assert policy.ceiling(500) == 0.5


def test_infrastructure_retries_until_the_budget_is_spent() -> None:
    config = RetryConfig.from_settings(base_s=1.0, max_s=1.0, budget_s=2.0)
    logic = RetryLogic(config, random.Random(42))
    state = logic.new_state()
    # delays 0.6394, 0.0250, 0.2750, 0.2232, 0.7364 (1.8992 s in all); the next, 0.6767, would
    # take the total past the 2.0 s budget
    delays = []
    while (delay := logic.on_failure(state, "infrastructure")) is not None:
        delays.append(delay)
    assert delays == pytest.approx(
        [
            0.6394267984578837,
            0.025010755222666936,
            0.27502931836911926,
            0.22321073814882275,
            0.7364712141640124,
        ]
    )
    assert state.attempts == 6


@pytest.mark.parametrize("error_class", ["poison", "authentication", "business"])
def test_poison_authentication_business_are_never_retried(error_class: str) -> None:
    logic = RetryLogic(RetryConfig.from_settings(), random.Random(1))
    assert logic.on_failure(logic.new_state(), error_class) is None  # type: ignore[arg-type]


def test_rate_limit_waits_at_least_retry_after() -> None:
    logic = RetryLogic(RetryConfig.from_settings(base_s=0.1, max_s=0.1), random.Random(42))
    assert logic.on_failure(logic.new_state(), "rate_limit", retry_after=3.0) == 3.0


def test_retry_call_sleeps_then_succeeds() -> None:
    calls, slept, told = [], [], []

    def work() -> str:
        calls.append(1)
        if len(calls) < 3:
            msg = "down"
            raise ConnectionRefusedError(msg)
        return "ok"

    logic = RetryLogic(RetryConfig.from_settings(base_s=0.1, max_s=5.0), random.Random(42))
    result = retry_call(
        "step", work, logic, sleep=slept.append, on_retry=lambda f, d: told.append(f.error_class)
    )
    assert result == "ok"
    assert slept == pytest.approx([0.06394267984578837, 0.005002151044533387])
    assert told == ["infrastructure", "infrastructure"]


def test_retry_call_gives_up_with_a_typed_failure() -> None:
    logic = RetryLogic(RetryConfig.from_settings(max_attempts_transient=3), random.Random(0))

    def work() -> None:
        msg = "slow"
        raise TimeoutError(msg)

    with pytest.raises(RetryExhaustedError) as caught:
        retry_call("redis_portfolio_sink", work, logic, sleep=lambda _s: None)
    failure = caught.value.failure
    assert (failure.error_class, failure.attempts, failure.retry_count) == ("transient", 3, 2)
    assert "redis_portfolio_sink: gave up after 3 attempt(s)" in str(caught.value)
    assert isinstance(caught.value.__cause__, TimeoutError)


def test_poison_fails_at_once() -> None:
    logic = RetryLogic(RetryConfig.from_settings(), random.Random(0))
    slept: list[float] = []
    with pytest.raises(RetryExhaustedError) as caught:
        retry_call("s", lambda: (_ for _ in ()).throw(DecodeError("t", "bad")), logic, sleep=slept.append)
    assert caught.value.failure.error_class == "poison"
    assert slept == []


def test_bad_policy_is_a_typed_error() -> None:
    with pytest.raises(OperatorError, match="max_attempts must be >= 1"):
        RetryPolicy(max_attempts=0)
