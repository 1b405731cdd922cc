"""What the read API shows, gathered from Redis, Postgres, Kafka and the local stack.

Fast reads (portfolios, ledger rows, equity, tailed signals) run on every
request. Slow ones (server probes, DLQ sizes, lag per partition, which need
Kafka metadata round trips) run in :class:`HealthMonitor`'s thread every
``every_s`` and are served from its last result, so a page polling every
second never waits on them. A source that fails is reported, never raised:
the rest of the page still renders.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from alpha_panda import orchestration
from alpha_panda.alerts import HealthView
from alpha_panda.dashboard import metrics
from alpha_panda.localstack import LocalStack
from connectors.errors import redact_url
from connectors.kafka.tail import TailMessage, TopicTail
from connectors.ledger_reader import LedgerReader
from connectors.localstack import SERVERS, StackUrls
from connectors.probes import probe_kafka, probe_postgres, probe_redis
from connectors.redis_portfolio import read_portfolios
from schemas.topics import SIGNALS_RAW, SIGNALS_REJECTED, broker_topic, dlq_topic

log = logging.getLogger(__name__)

RECENT = 15
"""Rows of each recent list (signals, rejections, orders, fills) on the page."""
EQUITY_POINTS = 500
"""Points per account of the equity chart."""


def dlq_topics(brokers: Sequence[str]) -> list[str]:
    """Every dead-letter topic of ``brokers`` (``market.ticks.dlq`` first)."""
    return [dlq_topic(t) for t in orchestration.topics_for(brokers) if not t.endswith(".dlq")]


def tailed_topics(brokers: Sequence[str]) -> list[str]:
    """What the topic tail follows: raw and rejected signals of each broker, and every DLQ."""
    topics = [broker_topic(b, stage) for b in brokers for stage in (SIGNALS_RAW, SIGNALS_REJECTED)]
    return topics + dlq_topics(brokers)


@dataclass
class Health:
    """One health check: servers, dataflow processes, lag per partition, DLQ sizes."""

    checked_at: datetime
    servers: list[dict[str, Any]]
    flows: list[dict[str, Any]]
    lag: list[dict[str, Any]]
    dlq: dict[str, int]
    errors: list[str] = field(default_factory=list)

    def view(self) -> HealthView:
        """The part the alert rules read."""
        return HealthView(
            dlq_totals=dict(self.dlq),
            lag={(r["dataflow"], r["topic"], r["partition"]): r["lag"] for r in self.lag},
            flows={f["name"]: bool(f["alive"]) for f in self.flows},
        )

    def as_json(self) -> dict[str, Any]:
        """The ``/api/health`` body."""
        return {
            "checked_at": self.checked_at.isoformat(),
            "servers": self.servers,
            "flows": self.flows,
            "lag": self.lag,
            "dlq": self.dlq,
            "errors": self.errors,
        }


def _probe(name: str, url: str, probe: Callable[[str], None]) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        probe(url)
    except Exception as err:  # any failure means "down", with its reason
        return {"name": name, "url": redact_url(url), "up": False, "error": f"{type(err).__name__}: {err}"}
    return {"name": name, "url": redact_url(url), "up": True,
            "latency_ms": round((time.perf_counter() - started) * 1000, 1)}  # fmt: skip


def check_health(urls: StackUrls, stack: LocalStack | None, brokers: Sequence[str]) -> Health:
    """Probe every server, list the stack's dataflows, their lag per partition and the DLQ sizes."""
    now = datetime.now(UTC)
    servers = [
        _probe("kafka", urls.kafka, probe_kafka),
        _probe("redis", urls.redis, probe_redis),
        _probe("postgres", urls.postgres, probe_postgres),
    ]
    errors: list[str] = []
    flows: list[dict[str, Any]] = []
    lag: list[dict[str, Any]] = []
    if stack is not None:
        for row in stack.status():
            if row.name not in SERVERS:
                flows.append({"name": row.name, "pid": row.pid, "alive": row.alive})
        for name in orchestration.ALL_DATAFLOWS:
            if not orchestration.recovery_dir(stack, name).exists():
                continue
            try:
                behind = orchestration.partition_lag(stack, urls, name)
            except Exception as err:  # reported on the page
                errors.append(f"lag of {name}: {err}")
                continue
            lag += [{"dataflow": name, "topic": topic, "partition": partition, "lag": messages}
                    for (topic, partition), messages in sorted(behind.items())]  # fmt: skip
    dlq: dict[str, int] = {}
    try:
        sizes = orchestration.end_offsets(urls.kafka, dlq_topics(brokers))
        dlq = {topic: sizes.get(topic, 0) for topic in dlq_topics(brokers)}
    except Exception as err:  # reported on the page
        errors.append(f"DLQ sizes: {err}")
    return Health(now, servers, flows, lag, dlq, errors)


class HealthMonitor:
    """Re-checks health every ``every_s`` in a thread; :attr:`latest` is the last result."""

    def __init__(self, check: Callable[[], Health], every_s: float = 3.0) -> None:
        self._check = check
        self.after: list[Callable[[], None]] = []
        """Also run after each check (e.g. refreshing the account gauges); failures are logged."""
        self._every_s = every_s
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self.latest: Health | None = None

    def refresh(self) -> Health:
        """Check now, publish the result and the gauges, and return it."""
        health = self._check()
        metrics.record_health(health.servers, health.flows, health.lag, health.dlq)
        self.latest = health
        self._ready.set()
        for hook in self.after:
            try:
                hook()
            except Exception as err:  # a hook never stops the health checks
                log.warning("health monitor: %s failed: %s", getattr(hook, "__name__", hook), err)
        return health

    def wait_ready(self, timeout_s: float) -> bool:
        """Wait for the first check; ``True`` if it finished in time."""
        return self._ready.wait(timeout_s)

    def start(self) -> HealthMonitor:
        """Start checking in a daemon thread (the first check at once)."""
        self._thread = threading.Thread(target=self._run, name="health-monitor", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh()
            except Exception:
                log.exception("health check failed")
            self._stop.wait(self._every_s)

    def stop(self) -> None:
        """Stop the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)


def _message_row(message: TailMessage) -> dict[str, Any] | None:
    value = message.value
    if value is None:
        return None
    data = value.get("data") or {}
    row: dict[str, Any] = {"topic": message.topic, "broker": value.get("broker"), "id": value.get("id")}
    if value.get("type") == "trading_signal":
        row |= {k: data.get(k) for k in
                ("strategy_id", "instrument_token", "signal_type", "quantity", "price", "confidence",
                 "timestamp")}  # fmt: skip
    elif value.get("type") == "rejected_signal":
        signal = data.get("original_signal") or {}
        row |= {
            k: signal.get(k) for k in ("strategy_id", "instrument_token", "signal_type", "quantity", "price")
        }
        row |= {"rejection_reason": data.get("rejection_reason"),
                "failed_rules": sorted(k for k, ok in (data.get("risk_checks") or {}).items() if not ok),
                "timestamp": data.get("timestamp")}  # fmt: skip
    else:
        return None
    return row


@dataclass
class DashboardSources:
    """Everything the app reads; built once by ``serve``."""

    urls: StackUrls
    brokers: tuple[str, ...]
    ledger: LedgerReader
    tail: TopicTail
    monitor: HealthMonitor

    def portfolios(self) -> dict[str, dict[str, dict[str, Any]]]:
        """``{broker: {strategy_id: latest snapshot}}`` from Redis."""
        return {broker: read_portfolios(self.urls.redis, broker) for broker in self.brokers}

    def recent_messages(self, stage: str, limit: int = RECENT) -> list[dict[str, Any]]:
        """The newest signals (``signals.raw``) or rejections (``signals.rejected``) of every broker."""
        rows = []
        for broker in self.brokers:
            for message in self.tail.recent(broker_topic(broker, stage), limit):
                row = _message_row(message)
                if row is not None:
                    rows.append(row)
        rows.sort(key=lambda r: str(r.get("timestamp") or ""), reverse=True)
        return rows[:limit]

    def accounts(
        self, portfolios: dict[str, dict[str, dict[str, Any]]], counts: dict[str, dict[str, dict[str, int]]]
    ) -> list[dict[str, Any]]:
        """One row per account (broker x strategy): the Redis snapshot and the ledger counts."""
        rows = []
        for broker in self.brokers:
            names = sorted(set(portfolios.get(broker, {})) | set(counts.get(broker, {})))
            for strategy in names:
                snap = portfolios.get(broker, {}).get(strategy)
                ledger = counts.get(broker, {}).get(strategy, {"orders": 0, "fills": 0, "failed": 0})
                row: dict[str, Any] = {"broker": broker, "strategy_id": strategy, **ledger}
                if snap is not None:
                    row |= {k: snap.get(k) for k in
                            ("cash", "realized_pnl", "unrealized_pnl", "total_pnl", "fees_paid",
                             "total_value", "timestamp")}  # fmt: skip
                    row["open_positions"] = sum(
                        1 for p in snap.get("positions", {}).values() if p["quantity"]
                    )
                rows.append(row)
        return rows

    def record_account_gauges(self) -> None:
        """Refresh the per-account gauges of ``/metrics`` from Redis and the ledger."""
        metrics.record_accounts(self.accounts(self.portfolios(), self.ledger.account_counts()))

    def overview(self) -> dict[str, Any]:
        """Everything the page shows, in one body; a failing source leaves its part empty."""
        errors: list[str] = []

        def attempt(what: str, read: Callable[[], Any], empty: Any) -> Any:
            try:
                return read()
            except Exception as err:  # reported on the page, the rest still renders
                errors.append(f"{what}: {err}")
                return empty

        portfolios = attempt("Redis portfolios", self.portfolios, {})
        counts = attempt("ledger counts", self.ledger.account_counts, {})
        health = self.monitor.latest
        body = {
            "generated_at": datetime.now(UTC).isoformat(),
            "brokers": list(self.brokers),
            "accounts": self.accounts(portfolios, counts),
            "equity": attempt("equity history", lambda: self.ledger.equity_curves(EQUITY_POINTS), {}),
            "signals": self.recent_messages(SIGNALS_RAW),
            "rejections": self.recent_messages(SIGNALS_REJECTED),
            "orders": attempt("ledger orders", lambda: self.ledger.recent_orders(RECENT), []),
            "fills": attempt("ledger fills", lambda: self.ledger.recent_fills(RECENT), []),
            "dlq": health.dlq if health else {},
            "health": health.as_json() if health else None,
        }
        if self.tail.error:
            errors.append(f"topic tail: {self.tail.error}")
        metrics.record_accounts(body["accounts"])
        body["errors"] = errors + (health.errors if health else [])
        return body

    def close(self) -> None:
        """Stop the threads and close the pool."""
        self.monitor.stop()
        self.tail.stop()
        self.ledger.close()
