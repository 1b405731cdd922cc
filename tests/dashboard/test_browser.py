"""The dashboard in a real headless Chromium (Debian's package, driven by Playwright).

Screenshots go to ``tmp/artifacts/`` (``ALPHA_PANDA_ARTIFACTS`` overrides);
with ``ALPHA_PANDA_UPDATE_DOCS=1`` the README's ``docs/dashboard.png`` is
regenerated from the same run.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.dashboard.conftest import ROOT, Dashboard
from tests.dashboard.seed import order_events, snapshot, write_orders, write_snapshots

pytestmark = pytest.mark.integration


@pytest.fixture
def browser(chromium: Path) -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(chromium), headless=True, args=["--no-sandbox"]
        )
        try:
            yield launched
        finally:
            launched.close()


def money(value: float) -> str:
    return f"{value:,.2f}"


def cell(page: Page, broker: str, strategy: str, field: str) -> str:
    return page.locator(f'tr[data-account="{broker}:{strategy}"] td[data-field="{field}"]').inner_text()


def wait_text(page: Page, selector: str, text: str, timeout_ms: float) -> None:
    # A function, not an expression string: the page's CSP forbids eval.
    page.wait_for_function(
        "([sel, want]) => document.querySelector(sel)?.textContent === want",
        arg=[selector, text],
        timeout=timeout_ms,
    )


def wait_count(page: Page, selector: str, count: int) -> None:
    page.wait_for_function(
        "([sel, n]) => document.querySelectorAll(sel).length === n", arg=[selector, count], timeout=15_000
    )


def signed_in(browser: Browser, dashboard: Dashboard) -> Page:
    page = browser.new_page(viewport={"width": 1600, "height": 1100})
    page.goto(f"{dashboard.url}#token={dashboard.token}")
    page.wait_for_selector("#accounts tbody tr[data-account]", timeout=15_000)
    return page


def test_page_is_refused_without_the_token(browser: Browser, dashboard: Dashboard, artifacts: Path) -> None:
    page = browser.new_page()
    response = page.goto(dashboard.url)
    assert response is not None
    assert response.status == 401
    assert page.locator("#login-form").is_visible()
    assert page.locator("#accounts").count() == 0
    page.fill("#token", "not-the-token")
    page.click("button[type=submit]")
    wait_text(page, "#login-status", "Wrong token.", 5_000)
    page.screenshot(path=str(artifacts / "dashboard-refused.png"))
    page.fill("#token", dashboard.token)
    page.click("button[type=submit]")
    page.wait_for_selector("#accounts tbody tr[data-account]", timeout=15_000)
    assert page.url == dashboard.url


def test_page_shows_redis_and_ledger_values_and_the_equity_chart(
    browser: Browser, dashboard: Dashboard, artifacts: Path
) -> None:
    page = signed_in(browser, dashboard)
    seeded = dashboard.seeded
    assert page.locator("#accounts tbody tr").count() == len(seeded.accounts)
    for broker, strategy in seeded.accounts:
        snap = seeded.snapshots[(broker, strategy)]
        for field in ("cash", "realized_pnl", "unrealized_pnl", "fees_paid", "total_pnl", "total_value"):
            assert cell(page, broker, strategy, field) == money(snap[field]), (broker, strategy, field)
        fills = str(seeded.fills[(broker, strategy)])
        assert cell(page, broker, strategy, "fills") == fills
        assert cell(page, broker, strategy, "orders") == fills
        assert cell(page, broker, strategy, "open_positions") == "1"
    assert cell(page, "paper", f"{dashboard.world.prefix}mom", "cash") == "989,834.77"

    # One trace per account, one marker per equity_history row.
    wait_count(page, "#equity-chart svg .scatterlayer .trace", 3)
    assert page.locator("#equity-chart svg .scatterlayer .trace").count() == len(seeded.history)
    points = sum(len(h) for h in seeded.history.values())
    assert points == 4 + 5 + 6
    assert page.locator("#equity-chart svg .scatterlayer path.point").count() == points
    assert page.locator("#equity-chart svg .scatterlayer path.js-line").count() == len(seeded.history)

    page.wait_for_selector("#signals tbody tr", timeout=15_000)
    wait_count(page, "#signals tbody tr", 9)
    reason = page.locator('#rejections td[data-field="rejection_reason"]').inner_text()
    assert reason == "max_position_size: position 1100 would exceed 1000"
    page.wait_for_selector('#dlq tr[data-topic="paper.orders.filled.dlq"]', timeout=15_000)
    assert page.locator('#dlq tr[data-topic="paper.orders.filled.dlq"] td').nth(1).inner_text() == "2"
    assert page.locator('#servers span[data-server="postgres"]').inner_text() == "postgres up"
    assert page.locator("#fills tbody tr").count() == 6
    page.screenshot(path=str(artifacts / "dashboard.png"), full_page=True)
    if os.environ.get("ALPHA_PANDA_UPDATE_DOCS") == "1":
        (ROOT / "docs").mkdir(exist_ok=True)
        shutil.copyfile(artifacts / "dashboard.png", ROOT / "docs" / "dashboard.png")


def test_page_updates_within_two_seconds_of_a_new_fill(
    browser: Browser, dashboard: Dashboard, artifacts: Path
) -> None:
    page = signed_in(browser, dashboard)
    broker, strategy = "zerodha", f"{dashboard.world.prefix}mom"
    assert cell(page, broker, strategy, "fills") == "3"
    requests: list[float] = []
    page.on(
        "request", lambda r: requests.append(time.monotonic()) if r.url.endswith("/api/overview") else None
    )

    urls = dashboard.world.urls
    write_orders(urls.postgres, order_events(broker, strategy, 3))
    new_snapshot = snapshot(broker, strategy, 979_000.125, 9, quantity=200)
    write_snapshots(urls.redis, urls.postgres, [new_snapshot])
    written = time.monotonic()
    wait_text(page, f'tr[data-account="{broker}:{strategy}"] td[data-field="fills"]', "4", 2_000)
    seen = time.monotonic() - written
    assert seen < 2.0
    wait_text(page, f'tr[data-account="{broker}:{strategy}"] td[data-field="cash"]', "979,000.13", 2_000)
    assert page.locator(f'#fills tr[data-order="{broker}:{strategy}-o3"]').count() == 1
    page.screenshot(path=str(artifacts / "dashboard-after-fill.png"), full_page=True)

    # Polling: at most one request per second.
    page.wait_for_timeout(4_500)  # (sync Playwright delivers events only while it runs)
    recent = [t for t in requests if t >= requests[0]]
    gaps = [b - a for a, b in zip(recent, recent[1:], strict=False)]
    assert gaps
    assert min(gaps) >= 0.95
