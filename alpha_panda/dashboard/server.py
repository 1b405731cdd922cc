"""Run the dashboard: build the sources, the alert watcher and the app, serve with uvicorn.

``alpha-panda serve`` and ``alpha-panda demo --dashboard`` call
:func:`start_dashboard` (a uvicorn server in a thread, for the demo and the
tests) or :func:`serve_forever` (the foreground command).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import uvicorn

from alpha_panda.alerts import AlertConfig, AlertRules, AlertWatcher
from alpha_panda.dashboard.app import create_app
from alpha_panda.dashboard.sources import DashboardSources, HealthMonitor, check_health, tailed_topics
from alpha_panda.localstack import LocalStack
from connectors.kafka.tail import TailMessage, TopicTail
from connectors.ledger_reader import LedgerReader
from connectors.localstack import StackUrls
from connectors.webhook import WebhookNotifier
from dataflows.settings import Settings
from schemas.errors import AlphaPandaError

log = logging.getLogger(__name__)


class DashboardConfigError(AlphaPandaError):
    """``serve`` cannot start as configured (e.g. no ``DASHBOARD_TOKEN``)."""


def webhook_urls(settings: Settings) -> list[str]:
    """The alert webhooks of ``ALERT_WEBHOOK_URLS`` (comma-separated)."""
    return [u.strip() for u in settings.alert_webhook_urls.get_secret_value().split(",") if u.strip()]


@dataclass
class RunningDashboard:
    """A dashboard serving in a background thread; :meth:`stop` shuts everything down."""

    url: str
    server: uvicorn.Server
    thread: threading.Thread
    sources: DashboardSources
    watcher: AlertWatcher | None
    notifier: WebhookNotifier

    def stop(self) -> None:
        """Stop uvicorn, the watcher, the monitor and the tail."""
        self.server.should_exit = True
        self.thread.join(timeout=15)
        if self.watcher is not None:
            self.watcher.stop()
        self.sources.close()
        self.notifier.close()


def build(
    settings: Settings, urls: StackUrls, stack: LocalStack | None, *, health_every_s: float = 3.0
) -> tuple[DashboardSources, AlertWatcher | None, WebhookNotifier]:
    """Build the sources (tail and monitor started) and, with webhooks configured, the alert watcher."""
    brokers: Sequence[str] = settings.active_brokers
    notifier = WebhookNotifier(webhook_urls(settings))
    watcher: AlertWatcher | None = None
    holder: dict[str, Any] = {}

    # The tail starts before the watcher exists; what it reads until then was
    # produced before the watcher started, which the watcher ignores anyway.
    def on_message(message: TailMessage) -> None:
        if holder.get("watcher") is not None:
            holder["watcher"].on_message(message)

    tail = TopicTail(urls.kafka, tailed_topics(brokers), on_message=on_message).start()
    monitor = HealthMonitor(lambda: check_health(urls, stack, brokers), every_s=health_every_s).start()
    sources = DashboardSources(urls, tuple(brokers), LedgerReader(urls.postgres), tail, monitor)
    monitor.after.append(sources.record_account_gauges)
    if notifier.configured:
        config = AlertConfig(
            dlq_per_minute=settings.alert_dlq_per_minute,
            lag_messages=settings.alert_lag_messages,
            cooldown_s=settings.alert_cooldown_s,
            daily_at=AlertConfig.parse_daily_at(settings.alert_daily_summary_at),
        )

        def health_view() -> Any:
            latest = monitor.latest
            return latest.view() if latest is not None else None

        watcher = AlertWatcher(
            AlertRules(config), notifier, health=health_view, accounts=sources.portfolios,
            check_s=settings.alert_check_s,
        ).start()  # fmt: skip
        holder["watcher"] = watcher
    return sources, watcher, notifier


def _server(app: Any, host: str, port: int) -> uvicorn.Server:
    # No access log: request lines are noise at one poll per second per viewer.
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
    return uvicorn.Server(config)


def _bound_port(server: uvicorn.Server) -> int:
    return int(server.servers[0].sockets[0].getsockname()[1])


def start_dashboard(
    settings: Settings, urls: StackUrls, stack: LocalStack | None, *, health_every_s: float = 3.0
) -> RunningDashboard:
    """Serve in a daemon thread; return once it listens (``DASHBOARD_PORT`` 0 picks a free port).

    Raises:
        DashboardConfigError: no ``DASHBOARD_TOKEN``, or the server did not start.
    """
    token = settings.dashboard_token.get_secret_value()
    if not token:
        msg = "DASHBOARD_TOKEN is not set: the dashboard refuses to run without a token"
        raise DashboardConfigError(msg)
    sources, watcher, notifier = build(settings, urls, stack, health_every_s=health_every_s)
    server = _server(create_app(sources, token), settings.dashboard_host, settings.dashboard_port)
    thread = threading.Thread(target=server.run, name="dashboard", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sources.close()
            notifier.close()
            msg = f"the dashboard did not start on {settings.dashboard_host}:{settings.dashboard_port}"
            raise DashboardConfigError(msg)
        time.sleep(0.05)
    url = f"http://{settings.dashboard_host}:{_bound_port(server)}/"
    return RunningDashboard(url, server, thread, sources, watcher, notifier)


def serve_forever(settings: Settings, urls: StackUrls, stack: LocalStack | None) -> RunningDashboard:
    """Start the dashboard and block until interrupted (Ctrl-C); then stop it."""
    running = start_dashboard(settings, urls, stack)
    try:
        while running.thread.is_alive():
            running.thread.join(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        running.stop()
    return running
