"""Kite order updates to orders.* events: the tracker, postbacks, and the updates flow on real servers."""

from __future__ import annotations

import hashlib
import json
import queue
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import httpx
import orjson
import pytest
from bytewax.testing import run_main
from pydantic import SecretStr

from connectors.kafka.admin import create_pipeline_topics
from connectors.kafka.records import consume_all
from connectors.kite.errors import KiteChecksumError
from connectors.kite.placer import order_tag
from connectors.kite.postback import PostbackServer, postback_checksum, verify_postback
from connectors.kite.protocol import KiteOrder, parse_order
from connectors.kite.store import OrderIntent
from connectors.kite.updates import OrderTracker
from connectors.postgres import ledger_fills
from dataflows.settings import Settings
from dataflows.zerodha_updates import build
from operators.zerodha_charges import ChargesSchedule, order_charges
from schemas.envelope import FailedEnvelope, FilledEnvelope, SubmittedEnvelope
from tests.ledger_rows import ledger_orders
from tests.zerodha.conftest import validated
from tests.zerodha.kite_server import API_SECRET, FakeKite, Scripted
from tests.zerodha.test_live_orders import executor, live_settings, order_id_of, seed

NOW = datetime(2024, 1, 2, 3, 50, tzinfo=UTC)
INTENT = OrderIntent(
    tag="ap00112233445566778",
    order_id="00112233-4455-6677-8899-aabbccddeeff",
    strategy_id="mom",
    instrument_token=408065,
    exchange="NSE",
    tradingsymbol="INFY",
    side="BUY",
    quantity=10,
    product="MIS",
    order_type="MARKET",
    price=None,
    trading_day=date(2024, 1, 2),
)


def kite_order(status: str, filled: int, average: float = 0.0, message: str | None = None) -> KiteOrder:
    return parse_order(
        {
            "order_id": "250000000000001",
            "status": status,
            "tag": INTENT.tag,
            "exchange": "NSE",
            "tradingsymbol": "INFY",
            "instrument_token": 408065,
            "transaction_type": "BUY",
            "product": "MIS",
            "order_type": "MARKET",
            "quantity": 10,
            "filled_quantity": filled,
            "pending_quantity": 10 - filled,
            "cancelled_quantity": 0,
            "price": 0,
            "average_price": average,
            "status_message": message,
            "order_timestamp": "2024-01-02 09:15:00",
            "exchange_timestamp": "2024-01-02 09:15:05",
        }
    )


def test_fees_of_a_fill_are_the_zerodha_schedule() -> None:
    charges = order_charges(
        ChargesSchedule(), product="MIS", side="BUY", quantity=10, price=Decimal("1500.6")
    )
    assert (
        charges.brokerage,
        charges.stt,
        charges.exchange,
        charges.sebi,
        charges.gst,
        charges.stamp_duty,
    ) == (
        Decimal("4.50"),
        Decimal("0.00"),
        Decimal("0.45"),
        Decimal("0.02"),
        Decimal("0.89"),
        Decimal("0.45"),
    )
    assert charges.total == Decimal("6.31")
    sell = order_charges(ChargesSchedule(), product="MIS", side="SELL", quantity=100, price=Decimal(1000))
    assert (sell.brokerage, sell.stt, sell.stamp_duty, sell.total) == (
        Decimal("20.00"),
        Decimal("25.00"),
        Decimal("0.00"),
        Decimal("52.22"),
    )
    cheaper = ChargesSchedule().with_overrides({"intraday_brokerage_cap": "10"})
    assert (
        order_charges(cheaper, product="MIS", side="SELL", quantity=100, price=Decimal(1000)).brokerage == 10
    )


def test_partial_fill_then_complete() -> None:
    tracker = OrderTracker(ChargesSchedule())
    [opened] = tracker.on_order(kite_order("OPEN", 0), INTENT, NOW)
    [partial] = tracker.on_order(kite_order("OPEN", 4, 1500.0), INTENT, NOW)
    assert tracker.on_order(kite_order("OPEN", 4, 1500.0), INTENT, NOW) == []  # postback + poll: once
    [filled] = tracker.on_order(kite_order("COMPLETE", 10, 1500.6), INTENT, NOW)
    assert isinstance(opened, SubmittedEnvelope) and isinstance(partial, SubmittedEnvelope)
    assert [(e.data.status, e.data.price) for e in (opened, partial)] == [("OPEN", 0.0), ("OPEN", 1500.0)]
    assert opened.id != partial.id
    assert isinstance(filled, FilledEnvelope)
    assert (filled.data.quantity, filled.data.fill_price, filled.data.fees) == (10, 1500.6, 6.31)
    assert (filled.data.execution_mode, filled.broker, filled.key) == ("live", "zerodha", "mom")
    assert filled.data.timestamp.isoformat() == "2024-01-02T03:45:05+00:00"  # exchange time, IST -> UTC
    assert filled.correlation_id == INTENT.order_id
    assert tracker.on_order(kite_order("COMPLETE", 10, 1500.6), INTENT, NOW) == []
    assert tracker.on_order(kite_order("OPEN", 4, 1500.0), INTENT, NOW) == []  # a late, older state


def test_reject() -> None:
    tracker = OrderTracker(ChargesSchedule())
    [failed] = tracker.on_order(kite_order("REJECTED", 0, message="Insufficient funds"), INTENT, NOW)
    assert isinstance(failed, FailedEnvelope)
    assert (failed.data.quantity, failed.data.error_message) == (
        10,
        "Kite order 250000000000001 REJECTED: Insufficient funds",
    )


def test_cancel_after_a_partial_fill_fills_the_part_and_fails_the_rest() -> None:
    tracker = OrderTracker(ChargesSchedule())
    filled, failed = tracker.on_order(replace(kite_order("CANCELLED", 4, 1500.0)), INTENT, NOW)
    assert isinstance(filled, FilledEnvelope) and isinstance(failed, FailedEnvelope)
    assert (filled.data.quantity, filled.data.fill_price) == (4, 1500.0)
    assert (failed.data.quantity, failed.data.error_message) == (
        6,
        "Kite order 250000000000001 CANCELLED (4 of 10 filled)",
    )


def postback_body(order: dict[str, Any], secret: str) -> bytes:
    checksum = hashlib.sha256((order["order_id"] + order["order_timestamp"] + secret).encode()).hexdigest()
    return json.dumps({**order, "checksum": checksum}).encode()


POSTBACK = {
    "order_id": "250000000000009",
    "status": "COMPLETE",
    "tag": INTENT.tag,
    "exchange": "NSE",
    "tradingsymbol": "INFY",
    "instrument_token": 408065,
    "transaction_type": "BUY",
    "product": "MIS",
    "order_type": "MARKET",
    "quantity": 10,
    "filled_quantity": 10,
    "pending_quantity": 0,
    "cancelled_quantity": 0,
    "price": 0,
    "average_price": 1500.6,
    "order_timestamp": "2024-01-02 09:15:00",
    "exchange_timestamp": "2024-01-02 09:15:05",
    "user_id": "AB1234",
}


def test_postback_checksum() -> None:
    body = postback_body(POSTBACK, API_SECRET)
    assert verify_postback(body, SecretStr(API_SECRET)).status == "COMPLETE"
    assert postback_checksum("1", "t", SecretStr("s")) == hashlib.sha256(b"1ts").hexdigest()
    with pytest.raises(KiteChecksumError, match="checksum mismatch for order '250000000000009'; refused"):
        verify_postback(postback_body(POSTBACK, "not-the-secret"), SecretStr(API_SECRET))
    tampered = json.loads(body)
    tampered["filled_quantity"] = 5
    tampered["order_id"] = "250000000000010"
    with pytest.raises(KiteChecksumError):
        verify_postback(json.dumps(tampered).encode(), SecretStr(API_SECRET))


def test_postback_endpoint_refuses_a_bad_checksum() -> None:
    received: queue.Queue[KiteOrder] = queue.Queue()
    server = PostbackServer(SecretStr(API_SECRET), received.put).start()
    try:
        bad = httpx.post(server.url, content=postback_body(POSTBACK, "forged-secret"))
        assert (bad.status_code, bad.json()) == (403, {"status": "error", "message": "checksum mismatch"})
        assert received.empty()
        assert server.refused == 1
        good = httpx.post(server.url, content=postback_body(POSTBACK, API_SECRET))
        assert (good.status_code, good.json()) == (200, {"status": "success"})
        assert received.get_nowait().order_id == "250000000000009"
        assert API_SECRET not in bad.text + good.text
    finally:
        server.stop()


# --- the flow, on real Kafka and Postgres ---------------------------------------------------


def updates_settings(kite: FakeKite, kafka: str, redis: str, postgres: str) -> Settings:
    return live_settings(
        kite,
        kafka_bootstrap_servers=kafka,
        redis_url=redis,
        postgres_url=SecretStr(postgres),
        kafka_tail=False,
    )


def events_of(kafka: str, topic: str, strategy: str) -> list[dict[str, Any]]:
    """The strategy's events on ``topic``, one per event id.

    Each ``run_main`` here starts without recovery, so a final state seen by
    both runs is published twice, with the same id (which ledger and
    portfolio apply once).
    """
    values = [orjson.loads(r.value) for r in consume_all(kafka, topic) if r.value]
    return list({v["id"]: v for v in values if v["key"] == strategy}.values())


@pytest.mark.integration
def test_updates_flow_place_partial_fill_complete_reject_cancel(
    kite: FakeKite, kafka_bootstrap: str, redis_url: str, migrated_postgres: str, token: int, unique: str
) -> None:
    create_pipeline_topics(kafka_bootstrap, partitions=4, retention_ms=3_600_000)
    strategy = f"upd_{unique}"
    seed(migrated_postgres, strategy, token)
    settings = updates_settings(kite, kafka_bootstrap, redis_url, migrated_postgres)
    from dataflows.live import Servers

    ex = executor(kite, Servers(kafka_bootstrap, redis_url, migrated_postgres))
    signals = [validated(strategy, token, quantity=10, price=1500.0, n=n) for n in range(3)]
    for signal in signals:
        ex.execute(signal)
    kite_ids = [kite.orders_tagged(order_tag(order_id_of(s)))[0]["order_id"] for s in signals]
    kite.fill(kite_ids[0], 4, 1500.0)
    kite.reject(kite_ids[1], "RMS: margin exceeds")
    kite.fill(kite_ids[2], 3, 1499.0)
    run_main(build(settings))
    kite.fill(kite_ids[0], 6, 1501.0)
    ex_client_cancel = httpx.delete(
        f"{kite.base_url}/orders/regular/{kite_ids[2]}",
        headers={"X-Kite-Version": "3", "Authorization": "token fake-api-key:fake-access-token-0000"},
    )
    assert ex_client_cancel.status_code == 200
    run_main(build(settings))

    submitted = events_of(kafka_bootstrap, "zerodha.orders.submitted", strategy)
    filled = events_of(kafka_bootstrap, "zerodha.orders.filled", strategy)
    failed = events_of(kafka_bootstrap, "zerodha.orders.failed", strategy)
    ids = [order_id_of(s) for s in signals]
    assert sorted((e["data"]["order_id"], e["data"]["status"]) for e in submitted) == sorted(
        [(ids[0], "OPEN"), (ids[2], "OPEN")]
    )
    assert sorted(
        (e["data"]["order_id"], e["data"]["quantity"], e["data"]["fill_price"], e["data"]["fees"])
        for e in filled
    ) == sorted([(ids[0], 10, 1500.6, 6.31), (ids[2], 3, 1499.0, 1.88)])
    assert sorted(
        (e["data"]["order_id"], e["data"]["quantity"], e["data"]["error_message"]) for e in failed
    ) == sorted(
        [
            (ids[1], 10, f"Kite order {kite_ids[1]} REJECTED: RMS: margin exceeds"),
            (ids[2], 7, f"Kite order {kite_ids[2]} CANCELLED (3 of 10 filled)"),
        ]
    )
    ledger = {
        row["order_id"]: row
        for row in ledger_orders(migrated_postgres, "zerodha")
        if row["strategy_id"] == strategy
    }
    assert {i: ledger[i]["status"] for i in ids} == {ids[0]: "FILLED", ids[1]: "FAILED", ids[2]: "FILLED"}
    fills = {
        row["order_id"]: row["quantity"]
        for row in ledger_fills(migrated_postgres, "zerodha")
        if row["strategy_id"] == strategy
    }
    assert fills == {ids[0]: 10, ids[2]: 3}


@pytest.mark.integration
def test_updates_flow_halts_the_broker_on_an_expired_token(
    kite: FakeKite,
    kafka_bootstrap: str,
    redis_url: str,
    migrated_postgres: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from connectors.kite.halts import clear_halts, read_postgres

    kite.expire_token()
    try:
        with caplog.at_level("CRITICAL", logger="alpha_panda.zerodha"):
            run_main(build(updates_settings(kite, kafka_bootstrap, redis_url, migrated_postgres)))
        assert read_postgres(migrated_postgres).broker_halted("zerodha")
        assert "ALERT zerodha: Kite refused the access token; halting the broker" in caplog.text
    finally:
        clear_halts(migrated_postgres, redis_url, "zerodha", None)


@pytest.mark.integration
def test_updates_flow_takes_postbacks_when_polling_fails(
    kite: FakeKite, kafka_bootstrap: str, redis_url: str, migrated_postgres: str, token: int, unique: str
) -> None:
    from dataflows.live import Servers

    create_pipeline_topics(kafka_bootstrap, partitions=4, retention_ms=3_600_000)
    strategy = f"pb_{unique}"
    seed(migrated_postgres, strategy, token)
    signal = validated(strategy, token, quantity=10, price=1500.0)
    executor(kite, Servers(kafka_bootstrap, redis_url, migrated_postgres)).execute(signal)
    [order] = kite.orders_tagged(order_tag(order_id_of(signal)))
    completed = kite.fill(order["order_id"], 10, 1500.6)
    server = PostbackServer(SecretStr(API_SECRET), lambda _order: None)
    flow = build(
        updates_settings(kite, kafka_bootstrap, redis_url, migrated_postgres), postback_server=server
    )
    server.start()
    try:
        forged = httpx.post(server.url, content=postback_body({**completed, "average_price": 1.0}, "forged"))
        assert forged.status_code == 403
        assert httpx.post(server.url, content=postback_body(completed, API_SECRET)).status_code == 200
        kite.script(
            "GET /orders",
            Scripted(503, {"status": "error", "error_type": "NetworkException", "message": "OMS down"}),
        )
        run_main(flow)
    finally:
        server.stop()
    [filled] = events_of(kafka_bootstrap, "zerodha.orders.filled", strategy)
    assert (filled["data"]["quantity"], filled["data"]["fill_price"], filled["data"]["fees"]) == (
        10,
        1500.6,
        6.31,
    )
