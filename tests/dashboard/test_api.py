"""The read API of `alpha-panda serve` over real Kafka, Redis and Postgres (seeded by real writes)."""

from __future__ import annotations

import time

import httpx
import pytest

from alpha_panda.dashboard.app import UNAUTHORIZED
from alpha_panda.dashboard.auth import COOKIE
from alpha_panda.dashboard.server import DashboardConfigError, start_dashboard
from connectors.localstack import StackUrls
from connectors.postgres import ledger_fills
from dataflows.settings import Settings
from schemas.codec import to_builtins
from tests.dashboard.conftest import Dashboard
from tests.integration.live_world import wait_until
from tests.ledger_rows import ledger_orders

pytestmark = pytest.mark.integration

ROUTES = [
    "/",
    "/api/overview",
    "/api/portfolios",
    "/api/equity/paper/x",
    "/api/signals",
    "/api/rejections",
    "/api/orders",
    "/api/fills",
    "/api/dlq",
    "/api/health",
    "/metrics",
    "/static/dashboard.js",
    "/static/plotly.min.js",
    "/no/such/route",
]


def test_every_route_is_refused_without_the_token(dashboard: Dashboard) -> None:
    with httpx.Client(base_url=dashboard.url) as client:
        for route in ROUTES:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": dashboard.token}):
                response = client.get(route, headers=headers)
                assert response.status_code == 401, (route, headers)
                assert response.headers["www-authenticate"] == 'Bearer realm="alpha-panda"'
    with httpx.Client(base_url=dashboard.url, cookies={COOKIE: dashboard.token}) as client:
        for route in ROUTES:
            assert client.get(route).status_code == 401, route
    with httpx.Client(base_url=dashboard.url) as client:
        assert client.get("/api/health").json() == {"detail": UNAUTHORIZED}
        login_page = client.get("/", headers={"Accept": "text/html"})
        assert login_page.status_code == 401
        assert 'id="login-form"' in login_page.text
        assert dashboard.token not in login_page.text
        assert client.post("/login", json={"token": "wrong"}).status_code == 401
        assert client.post("/logout").status_code == 401


def test_bearer_token_and_login_cookie_open_every_route(dashboard: Dashboard) -> None:
    bearer = {"Authorization": f"Bearer {dashboard.token}"}
    with httpx.Client(base_url=dashboard.url, headers=bearer) as client:
        for route in ROUTES[:-1]:
            assert client.get(route).status_code == 200, route
        assert client.get("/no/such/route").status_code == 404
        assert client.get("/static/secret.txt").status_code == 404
    with httpx.Client(base_url=dashboard.url) as client:
        login = client.post("/login", json={"token": dashboard.token})
        assert login.status_code == 204
        cookie = client.cookies[COOKIE]
        assert cookie != dashboard.token
        assert "HttpOnly" in login.headers["set-cookie"]
        assert "SameSite=strict" in login.headers["set-cookie"]
        page = client.get("/")
        assert page.status_code == 200
        assert '<div id="equity-chart">' in page.text
        assert page.headers["content-security-policy"].startswith("default-src 'self'")
        form = client.post("/login", content=f"token={dashboard.token}",
                           headers={"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
        assert form.status_code == 204


def _get(dashboard: Dashboard, route: str) -> object:
    response = httpx.get(
        dashboard.url.rstrip("/") + route, headers={"Authorization": f"Bearer {dashboard.token}"}
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_api_returns_what_redis_postgres_and_kafka_hold(dashboard: Dashboard) -> None:
    seeded, prefix = dashboard.seeded, dashboard.world.prefix
    portfolios = _get(dashboard, "/api/portfolios")
    assert portfolios == {
        "paper": {s: seeded.snapshots[("paper", s)] for b, s in seeded.accounts if b == "paper"},
        "zerodha": {s: seeded.snapshots[("zerodha", s)] for b, s in seeded.accounts if b == "zerodha"},
    }
    assert portfolios["paper"][f"{prefix}mom"]["cash"] == 989_834.769925
    assert (
        _get(dashboard, f"/api/portfolios/zerodha/{prefix}mom")
        == seeded.snapshots[("zerodha", f"{prefix}mom")]
    )
    missing = httpx.get(
        dashboard.url + f"api/portfolios/zerodha/{prefix}mr",
        headers={"Authorization": f"Bearer {dashboard.token}"},
    )
    assert (missing.status_code, missing.json()) == (
        404, {"detail": f"no portfolio zerodha:portfolio:{prefix}mr in Redis"},
    )  # fmt: skip

    for (broker, strategy), history in seeded.history.items():
        body = _get(dashboard, f"/api/equity/{broker}/{strategy}")
        expected = [to_builtins(item.envelope)["data"] for item in history]
        assert [p["total_value"] for p in body["points"]] == [e["total_value"] for e in expected]
        assert [p["total_pnl"] for p in body["points"]] == [e["total_pnl"] for e in expected]

    postgres = dashboard.world.urls.postgres
    assert len(_get(dashboard, "/api/fills")) == len(ledger_fills(postgres)) == 6
    fill = _get(dashboard, "/api/fills?limit=1")[0]
    assert (fill["fill_price"], fill["fees"], fill["quantity"]) == (101.55075, 10.155075, 100)
    assert {(o["broker"], o["order_id"], o["status"]) for o in _get(dashboard, "/api/orders")} == {
        (o["broker"], o["order_id"], o["status"]) for o in ledger_orders(postgres)
    }

    overview = _get(dashboard, "/api/overview")
    rows = {(a["broker"], a["strategy_id"]): a for a in overview["accounts"]}
    assert set(rows) == set(seeded.accounts)
    for account, row in rows.items():
        snap = seeded.snapshots[account]
        assert (row["cash"], row["total_pnl"], row["total_value"]) == (
            snap["cash"], snap["total_pnl"], snap["total_value"],
        )  # fmt: skip
        assert (row["orders"], row["fills"], row["open_positions"]) == (
            seeded.fills[account], seeded.fills[account], 1,
        )  # fmt: skip
    assert overview["errors"] == []

    wait_until(lambda: len(_get(dashboard, "/api/signals")) == 9, 20, "the tail to read 9 signals")
    signals = _get(dashboard, "/api/signals")
    assert {(s["broker"], s["strategy_id"]) for s in signals} == set(seeded.accounts)
    assert signals[0]["price"] == 103.5  # newest first: signal 2 at 101.5 + 2
    rejections = _get(dashboard, "/api/rejections")
    assert [(r["strategy_id"], r["rejection_reason"], r["failed_rules"]) for r in rejections] == [
        (f"{prefix}mom", "max_position_size: position 1100 would exceed 1000", ["max_position_size"])
    ]


def test_dlq_counts_health_and_metrics(dashboard: Dashboard) -> None:
    wait_until(lambda: _get(dashboard, "/api/dlq").get("paper.orders.filled.dlq") == 2, 20, "DLQ sizes")
    dlq = _get(dashboard, "/api/dlq")
    assert {t: n for t, n in dlq.items() if n} == {"paper.orders.filled.dlq": 2}
    assert "market.ticks.dlq" in dlq
    assert "zerodha.pnl.snapshots.dlq" in dlq
    health = _get(dashboard, "/api/health")
    assert [(s["name"], s["up"]) for s in health["servers"]] == [
        ("kafka", True),
        ("redis", True),
        ("postgres", True),
    ]
    assert health["flows"] == []  # nothing but servers runs in this world
    assert health["errors"] == []
    metrics = httpx.get(
        dashboard.url + "metrics", headers={"Authorization": f"Bearer {dashboard.token}"}
    ).text
    assert 'alpha_panda_dlq_depth{topic="paper.orders.filled.dlq"} 2.0' in metrics
    assert 'alpha_panda_server_up{server="postgres"} 1.0' in metrics


def test_serve_refuses_to_start_without_a_token() -> None:
    urls = StackUrls("127.0.0.1:1", "redis://127.0.0.1:1/0", "postgresql://127.0.0.1:1/x")
    with pytest.raises(DashboardConfigError, match="DASHBOARD_TOKEN is not set"):
        start_dashboard(Settings(dashboard_token=""), urls, None)


def test_a_server_going_down_is_reported_not_raised(dashboard: Dashboard) -> None:
    started = time.monotonic()
    dashboard.world.stack.stop_process("kafka")
    wait_until(lambda: not _get(dashboard, "/api/health")["servers"][0]["up"], 30, "health to see Kafka down")
    overview = _get(dashboard, "/api/overview")
    assert {(a["broker"], a["strategy_id"]) for a in overview["accounts"]} == set(dashboard.seeded.accounts)
    assert time.monotonic() - started < 30
