"""The Kite Connect client against the local Kite server: shapes, headers, errors, classes."""

from __future__ import annotations

import hashlib
import time

import pytest
from pydantic import SecretStr

from connectors.kite.client import KiteClient, login_url, session_checksum
from connectors.kite.errors import (
    KITE_RULES,
    KiteInputError,
    KiteNetworkError,
    KiteOrderError,
    KiteRateLimitError,
    KiteServerError,
    KiteTokenError,
    KiteTransportError,
)
from connectors.kite.ratelimit import RateLimiter
from operators.failures import classify
from tests.zerodha.kite_server import (
    API_KEY,
    API_SECRET,
    NEW_ACCESS_TOKEN,
    REQUEST_TOKEN,
    FakeKite,
    Scripted,
)

ORDER = {
    "exchange": "NSE",
    "tradingsymbol": "INFY",
    "transaction_type": "BUY",
    "quantity": 10,
    "product": "MIS",
    "order_type": "MARKET",
    "validity": "DAY",
    "tag": "ap0123456789abcdef01",
}


def test_place_sends_form_with_kite_headers(kite: FakeKite, client: KiteClient) -> None:
    order_id = client.place_order(**ORDER)
    request = kite.placements()[0]
    assert request.form == {k: str(v) for k, v in ORDER.items()}
    assert request.headers["x-kite-version"] == "3"
    assert request.headers["authorization"] == "token fake-api-key:fake-access-token-0000"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    [order] = client.orders()
    assert (order.order_id, order.status, order.tag, order.quantity) == (order_id, "OPEN", ORDER["tag"], 10)


def test_partial_fill_then_complete_in_history_and_trades(kite: FakeKite, client: KiteClient) -> None:
    order_id = client.place_order(**ORDER)
    kite.fill(order_id, 4, 1500.0)
    [partial] = client.orders()
    assert (partial.status, partial.filled_quantity, partial.pending_quantity) == ("OPEN", 4, 6)
    kite.fill(order_id, 6, 1501.0)
    history = client.order_history(order_id)
    assert [(h.status, h.filled_quantity) for h in history] == [("OPEN", 0), ("OPEN", 4), ("COMPLETE", 10)]
    assert history[-1].average_price == pytest.approx(1500.6)
    assert [(t.quantity, t.average_price) for t in client.order_trades(order_id)] == [
        (4, 1500.0),
        (6, 1501.0),
    ]
    assert len(client.trades()) == 2
    # IST exchange time -> UTC
    assert history[-1].exchange_timestamp is not None
    assert history[-1].exchange_timestamp.isoformat() == "2024-01-02T03:45:05+00:00"


def test_modify_and_cancel(kite: FakeKite, client: KiteClient) -> None:
    order_id = client.place_order(**{**ORDER, "order_type": "LIMIT", "price": 1490.05})
    assert client.modify_order(order_id, quantity=12, price=1491.0) == order_id
    assert (kite.orders[order_id]["quantity"], kite.orders[order_id]["price"]) == (12, 1491.0)
    assert client.cancel_order(order_id) == order_id
    [order] = client.orders()
    assert (order.status, order.cancelled_quantity) == ("CANCELLED", 12)
    with pytest.raises(KiteOrderError, match="Order cannot be modified or cancelled as it is CANCELLED"):
        client.cancel_order(order_id)


def test_error_types_map_to_failure_classes(kite: FakeKite, client: KiteClient) -> None:
    kite.script(
        "GET /orders",
        Scripted(503, {"status": "error", "error_type": "NetworkException", "message": "OMS unreachable"}),
    )
    with pytest.raises(KiteNetworkError) as network:
        client.orders()
    assert classify(network.value, KITE_RULES) == "transient"
    kite.script("GET /orders", Scripted(502, b"<html>bad gateway</html>"))
    with pytest.raises(KiteServerError) as server:
        client.orders()
    assert classify(server.value, KITE_RULES) == "transient"
    with pytest.raises(KiteInputError, match="Missing `product`") as bad:
        client.place_order(**{k: v for k, v in ORDER.items() if k != "product"})
    assert classify(bad.value, KITE_RULES) == "business"
    kite.script(
        "POST /orders/regular",
        Scripted(429, {"status": "error", "message": "Too many requests"}, {"Retry-After": "2"}),
    )
    with pytest.raises(KiteRateLimitError) as limited:
        client.place_order(**ORDER)
    assert (classify(limited.value, KITE_RULES), limited.value.retry_after) == ("rate_limit", 2.0)
    kite.expire_token()
    with pytest.raises(KiteTokenError, match=r"Kite TokenException \(HTTP 403\)") as expired:
        client.orders()
    assert classify(expired.value, KITE_RULES) == "authentication"
    assert "fake-access-token-0000" not in str(expired.value)


def test_timeout_is_transient(kite: FakeKite) -> None:
    kite.delay("GET /orders", 1.0)
    with KiteClient(
        SecretStr(API_KEY), SecretStr("fake-access-token-0000"), base_url=kite.base_url, timeout_s=0.2
    ) as quick:
        with pytest.raises(KiteTransportError, match="no answer from .* in time") as err:
            quick.orders()
    assert classify(err.value, KITE_RULES) == "transient"


def test_positions_and_holdings(kite: FakeKite, client: KiteClient) -> None:
    kite.positions = [
        {
            "tradingsymbol": "INFY",
            "exchange": "NSE",
            "instrument_token": 408065,
            "product": "MIS",
            "quantity": 5,
            "average_price": 1500.5,
        }
    ]
    kite.holdings = [
        {
            "tradingsymbol": "TCS",
            "exchange": "NSE",
            "instrument_token": 2953217,
            "product": "CNC",
            "quantity": 3,
            "t1_quantity": 2,
            "average_price": 3500.0,
        }
    ]
    assert [(p.instrument_token, p.quantity) for p in client.positions()] == [(408065, 5)]
    assert [(h.instrument_token, h.quantity, h.average_price) for h in client.holdings()] == [
        (2953217, 5, 3500.0)
    ]


def test_session_token_exchange(kite: FakeKite) -> None:
    expected = hashlib.sha256(b"fake-api-key" + b"fake-request-token" + b"fake-api-secret-9999").hexdigest()
    assert session_checksum(SecretStr(API_KEY), REQUEST_TOKEN, SecretStr(API_SECRET)) == expected
    with KiteClient(SecretStr(API_KEY), SecretStr(""), base_url=kite.base_url) as anonymous:
        session = anonymous.generate_session(REQUEST_TOKEN, SecretStr(API_SECRET))
        assert session["access_token"] == NEW_ACCESS_TOKEN
        with pytest.raises(KiteTokenError, match="Invalid checksum"):
            anonymous.generate_session(REQUEST_TOKEN, SecretStr("wrong-secret"))
    request = kite.requests[0]
    assert "authorization" not in request.headers
    assert login_url(SecretStr(API_KEY)) == "https://kite.zerodha.com/connect/login?v=3&api_key=fake-api-key"


def test_rate_limiter_keeps_a_burst_under_the_server_limit(kite: FakeKite, client: KiteClient) -> None:
    started = time.monotonic()
    for n in range(20):
        client.place_order(**{**ORDER, "tag": f"burst{n}"})
    elapsed = time.monotonic() - started
    assert kite.rate_limited == 0
    assert len(kite.orders) == 20
    assert elapsed >= 2.0  # 8 per second: orders 9-16 wait one window, 17-20 a second


def test_rate_limiter_counts_exact_waits() -> None:
    now = [0.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(3, clock=lambda: now[0], sleep=sleep)
    assert [limiter.acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
    now[0] = 0.25
    assert limiter.acquire() == pytest.approx(0.75)
    assert waits == [pytest.approx(0.75)]
