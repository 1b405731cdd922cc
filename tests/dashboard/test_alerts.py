"""Alerts: the rules with exact values, webhooks against a real HTTP server on loopback,
and `serve` alerting end to end from what lands on Kafka."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from alpha_panda.alerts import Alert, AlertConfig, AlertRules
from alpha_panda.dashboard.server import start_dashboard
from connectors.kafka.records import produce
from connectors.kafka.tail import TailMessage
from connectors.webhook import WebhookNotifier, redact_webhook, webhook_request
from schemas.codec import encode, to_builtins
from schemas.topics import ORDERS_FILLED, SIGNALS_REJECTED, broker_topic, dlq_topic
from tests.dashboard.conftest import private_world
from tests.dashboard.seed import dead_letters, rejection
from tests.integration.live_world import wait_until

NOW = datetime(2024, 1, 2, 9, 0, tzinfo=UTC)
HALTED = "halted: broker paper is halted"


def tailed(topic: str, value: dict[str, Any]) -> TailMessage:
    return TailMessage(topic=topic, partition=0, offset=0, timestamp_ms=0, value=value)


def halted_message(strategy: str = "mom") -> TailMessage:
    return tailed("paper.signals.rejected", to_builtins(rejection("paper", strategy, 1, "halted", HALTED)))


def auth_letter() -> TailMessage:
    topic = broker_topic("zerodha", "signals.validated")
    value = json.loads(dead_letters(topic, 1, "authentication")[0])
    return tailed(dlq_topic(topic), value)


# --- rules ------------------------------------------------------------------------


def test_a_halted_rejection_alerts_once_per_cooldown() -> None:
    rules = AlertRules(AlertConfig(cooldown_s=300))
    [alert] = rules.on_message(halted_message(), NOW)
    assert (alert.kind, alert.key, alert.severity) == ("halted", "halted:paper:mom", "critical")
    assert alert.title == "paper: trading halted for mom"
    assert alert.text == f"signals of paper/mom are rejected: {HALTED}"
    assert rules.on_message(halted_message(), NOW + timedelta(seconds=299)) == []
    assert len(rules.on_message(halted_message(), NOW + timedelta(seconds=300))) == 1
    assert len(rules.on_message(halted_message("other"), NOW + timedelta(seconds=1))) == 1
    other_rule = to_builtins(rejection("paper", "mom", 2, "max_position_size", "max_position_size: too big"))
    assert rules.on_message(tailed("paper.signals.rejected", other_rule), NOW) == []


def test_an_authentication_dead_letter_alerts_and_other_classes_do_not() -> None:
    rules = AlertRules(AlertConfig())
    [alert] = rules.on_message(auth_letter(), NOW)
    assert alert.key == "authentication:zerodha.signals.validated"
    assert alert.title == "authentication failure on zerodha.signals.validated"
    assert alert.text == "InvalidPassword in test; message dead-lettered to zerodha.signals.validated.dlq"
    topic = broker_topic("paper", ORDERS_FILLED)
    other = tailed(dlq_topic(topic), json.loads(dead_letters(topic, 1, "infrastructure")[0]))
    assert rules.on_message(other, NOW) == []


def test_dlq_rate_counts_dead_letters_of_the_trailing_minute() -> None:
    rules = AlertRules(AlertConfig(dlq_per_minute=10, cooldown_s=0))
    assert rules.on_health(NOW, dlq_totals={"a.dlq": 5, "b.dlq": 0}, lag={}) == []  # first look: no rate yet
    [alert] = rules.on_health(NOW + timedelta(seconds=30), dlq_totals={"a.dlq": 16, "b.dlq": 5}, lag={})
    assert alert.title == "11 dead letters on a.dlq in the last 30 s"
    assert alert.text == "11.0 per minute > threshold 10.0"
    assert alert.details == {"topic": "a.dlq", "dead_letters": 11, "per_minute": 11.0}
    # b.dlq: 5 in 30 s counts over a whole minute, 5 per minute. Then from the +30 s baseline:
    # a.dlq 5 more in the next minute, b.dlq 10 (not over 10).
    assert rules.on_health(NOW + timedelta(seconds=90), dlq_totals={"a.dlq": 21, "b.dlq": 15}, lag={}) == []
    [burst] = rules.on_health(NOW + timedelta(seconds=91), dlq_totals={"a.dlq": 21, "b.dlq": 26}, lag={})
    assert (burst.title, burst.details["dead_letters"]) == ("21 dead letters on b.dlq in the last 61 s", 21)
    assert rules.on_health(NOW + timedelta(seconds=92), dlq_totals={"new.dlq": 3}, lag={}) == []


def test_lag_sums_partitions_per_dataflow_and_topic() -> None:
    rules = AlertRules(AlertConfig(lag_messages=10_000))
    lag = {("pipeline", "market.ticks", 0): 6_000, ("pipeline", "market.ticks", 1): 5_000,
           ("risk_manager", "paper.signals.raw", 0): 10_000}  # fmt: skip
    [alert] = rules.on_health(NOW, dlq_totals={}, lag=lag)
    assert alert.title == "pipeline is 11,000 messages behind on market.ticks"
    assert alert.text == "consumer lag 11,000 > threshold 10,000"
    flows = {"pipeline": True, "market_feed": False}  # market_feed had already stopped: no alert
    assert rules.on_health(NOW, dlq_totals={}, lag={}, flows=flows) == []
    [down] = rules.on_health(NOW, dlq_totals={}, lag={}, flows={"pipeline": False, "market_feed": False})
    assert (down.key, down.title) == ("dataflow_down:pipeline", "dataflow pipeline stopped")
    assert rules.on_health(NOW, dlq_totals={}, lag={}, flows={"pipeline": False}) == []


def test_daily_summary_once_a_day_after_its_time() -> None:
    rules = AlertRules(AlertConfig(daily_at=time(10, 5)))
    accounts = {
        "paper": {"mom": {"total_pnl": 1234.5, "realized_pnl": 1000.0, "fees_paid": 20.25},
                  "mr": {"total_pnl": -234.25, "realized_pnl": 0.0, "fees_paid": 5.0}},
        "zerodha": {"mom": {"total_pnl": 10.0, "realized_pnl": 10.0, "fees_paid": 1.0}},
    }  # fmt: skip
    day = datetime(2024, 1, 2, 9, 0, tzinfo=UTC)
    assert rules.on_clock(day, accounts) == []
    assert rules.on_clock(day.replace(hour=10, minute=4), accounts) == []
    [summary] = rules.on_clock(day.replace(hour=10, minute=5), accounts)
    assert summary.title == "daily P&L 2024-01-02: 1,010.25"
    assert summary.text == "paper/mom: 1,234.50\npaper/mr: -234.25\nzerodha/mom: 10.00\nbook: 1,010.25"
    assert summary.details["book_total_pnl"] == 1010.25
    assert rules.on_clock(day.replace(hour=23), accounts) == []
    assert len(rules.on_clock(day + timedelta(days=1, hours=1, minutes=5), accounts)) == 1
    late = AlertRules(AlertConfig(daily_at=time(10, 5)))
    assert late.on_clock(day.replace(hour=11), accounts) == []  # started after today's time: none today
    assert len(late.on_clock(day + timedelta(days=1, hours=2), accounts)) == 1
    assert AlertRules(AlertConfig(daily_at=None)).on_clock(day.replace(hour=12), accounts) == []


# --- webhooks on a real HTTP server -------------------------------------------------------


class Receiver:
    """A real HTTP server on 127.0.0.1 recording each POST (path, JSON body); answers ``status``."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.posts: list[tuple[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.posts.append((self.path, json.loads(body)))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def sample_alert() -> Alert:
    return Alert("lag", "lag:x", "warning", "x is behind", "consumer lag 2 > threshold 1", NOW, {"lag": 2})


def test_plain_and_telegram_webhooks_receive_their_forms(receiver: Receiver) -> None:
    plain = receiver.url("/hooks/alpha?key=s3cret")
    telegram = receiver.url("/bot123456:SECRET-token/sendMessage?chat_id=-1001&disable_notification=true")
    notifier = WebhookNotifier([plain, telegram])
    alert = sample_alert()
    deliveries = notifier.send(alert.payload(), alert.message())
    notifier.close()
    assert [(d.ok, d.status, d.target) for d in deliveries] == [
        (True, 200, f"http://127.0.0.1:{receiver.port}/***"),
        (True, 200, f"http://127.0.0.1:{receiver.port}/***"),
    ]
    assert receiver.posts == [
        ("/hooks/alpha?key=s3cret", {
            "source": "alpha-panda", "kind": "lag", "severity": "warning", "title": "x is behind",
            "text": "consumer lag 2 > threshold 1", "at": "2024-01-02T09:00:00+00:00", "details": {"lag": 2},
        }),
        ("/bot123456:SECRET-token/sendMessage?disable_notification=true",
         {"chat_id": "-1001", "text": "[alpha-panda] x is behind\nconsumer lag 2 > threshold 1"}),
    ]  # fmt: skip
    # Without chat_id the URL is an ordinary webhook.
    assert webhook_request(receiver.url("/bot1:x/sendMessage"), {"a": 1}, "t").body == {"a": 1}


def test_failed_deliveries_are_retried_once_and_never_log_the_url(caplog: pytest.LogCaptureFixture) -> None:
    failing = Receiver(status=500)
    refused_port = Receiver()
    refused_url = refused_port.url("/botSECRET/sendMessage?chat_id=1")
    refused_port.close()  # nothing listens there any more
    try:
        notifier = WebhookNotifier([failing.url("/SECRET-path"), refused_url], retry_pause_s=0.01)
        with caplog.at_level(logging.DEBUG):  # httpx itself logs request URLs at INFO
            deliveries = notifier.send({"kind": "x"}, "x")
        notifier.close()
    finally:
        failing.close()
    assert [(d.ok, d.status, d.error) for d in deliveries] == [
        (False, 500, "HTTP 500"), (False, None, "ConnectError"),
    ]  # fmt: skip
    assert len(failing.posts) == 2  # one retry
    assert "SECRET" not in caplog.text
    assert f"alert webhook http://127.0.0.1:{failing.port}/*** failed: HTTP 500" in caplog.text
    assert redact_webhook("https://api.telegram.org/bot1:SECRET/sendMessage?chat_id=1") == (
        "https://api.telegram.org/***"
    )


# --- serve, end to end ------------------------------------------------------------------------


@pytest.mark.integration
def test_serve_alerts_on_halts_authentication_and_dlq_rate(
    redis_url: str, postgres_url: str, receiver: Receiver
) -> None:
    webhook = receiver.url("/hook/SECRET")
    with private_world(redis_url, postgres_url) as world:
        settings = world.settings(
            dashboard_token="t", dashboard_port=0, alert_webhook_urls=webhook, alert_check_s=0.3,
            alert_dlq_per_minute=5.0, alert_daily_summary_at="",
        )  # fmt: skip
        assert "SECRET" not in repr(settings)
        old = broker_topic("paper", ORDERS_FILLED)
        produce(world.urls.kafka, dlq_topic(old), [(None, v) for v in dead_letters(old, 3)])  # before start
        running = start_dashboard(settings, world.urls, world.stack, health_every_s=0.5)
        try:
            assert running.sources.monitor.wait_ready(30)
            wait_until(lambda: running.sources.monitor.latest.dlq.get(dlq_topic(old)) == 3, 20, "DLQ size 3")
            halted = rejection("paper", f"{world.prefix}mom", 1, "halted", HALTED)
            produce(world.urls.kafka, broker_topic("paper", SIGNALS_REJECTED), [(halted.key, encode(halted))])
            auth_topic = broker_topic("zerodha", "signals.validated")
            produce(
                world.urls.kafka,
                dlq_topic(auth_topic),
                [(None, dead_letters(auth_topic, 1, "authentication")[0])],
            )
            # One key: one partition, one produce request, so a health check sees all 20 or none.
            produce(world.urls.kafka, dlq_topic(old), [("k", v) for v in dead_letters(old, 20, start=3)])

            def kinds() -> set[str]:
                return {body["kind"] for _path, body in receiver.posts}

            wait_until(lambda: kinds() == {"halted", "authentication", "dlq_rate"}, 30, "three alerts")
        finally:
            running.stop()
    by_kind = {body["kind"]: body for _path, body in receiver.posts}
    assert by_kind["halted"]["title"] == f"paper: trading halted for {world.prefix}mom"
    assert by_kind["authentication"]["details"] == {
        "original_topic": "zerodha.signals.validated", "dlq_topic": "zerodha.signals.validated.dlq",
    }  # fmt: skip
    assert by_kind["dlq_rate"]["details"]["topic"] == "paper.orders.filled.dlq"
    assert by_kind["dlq_rate"]["details"]["dead_letters"] == 20  # the 3 older ones are not a rate
    assert {path for path, _body in receiver.posts} == {"/hook/SECRET"}
    assert len(receiver.posts) == 3  # old dead letters and the tail's backlog alert nobody
