"""Alerts: rules over what the read side observes, delivered by webhook.

:class:`AlertRules` is pure: observations and the time go in, :class:`Alert`
values come out (time is injected, nothing is sent). It fires on
- a signal rejected by the ``halted`` rule (a broker or strategy halted),
  and a dead letter of class ``authentication`` (refused credentials);
- a dataflow process of the local stack that stopped running;
- more than ``dlq_per_minute`` dead letters on a DLQ topic in the trailing minute;
- a dataflow's consumer lag on a topic above ``lag_messages``;
- once a day at ``daily_at`` (UTC), a P&L summary of every account.
A condition that stays true fires again only after ``cooldown_s``.

:class:`AlertWatcher` is the glue in ``alpha-panda serve``: it feeds the
rules from the topic tail and the health monitor, and posts every alert
through :class:`connectors.webhook.WebhookNotifier`.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from connectors.kafka.tail import TailMessage
from connectors.webhook import Delivery, WebhookNotifier
from schemas.topics import is_dlq

log = logging.getLogger(__name__)

DLQ_WINDOW = timedelta(minutes=1)
"""Dead-letter rates are counted over this trailing window."""


@dataclass(frozen=True)
class Alert:
    """One notification. ``key`` identifies the condition (for the cooldown)."""

    kind: str
    key: str
    severity: str
    title: str
    text: str
    at: datetime
    details: dict[str, Any] = field(default_factory=dict)

    def payload(self) -> dict[str, Any]:
        """The JSON body a plain webhook receives."""
        return {
            "source": "alpha-panda",
            "kind": self.kind,
            "severity": self.severity,
            "title": self.title,
            "text": self.text,
            "at": self.at.isoformat(),
            "details": self.details,
        }

    def message(self) -> str:
        """The human-readable form (what a Telegram chat shows)."""
        return f"[alpha-panda] {self.title}\n{self.text}"


@dataclass(frozen=True)
class AlertConfig:
    """Thresholds: dead letters per minute per DLQ topic, lag in messages, seconds, UTC time."""

    dlq_per_minute: float = 10.0
    lag_messages: int = 10_000
    cooldown_s: float = 300.0
    daily_at: time | None = time(10, 5)

    @staticmethod
    def parse_daily_at(text: str) -> time | None:
        """``"HH:MM"`` as a UTC time; empty means no daily summary."""
        if not text:
            return None
        hours, _, minutes = text.partition(":")
        return time(int(hours), int(minutes))


@dataclass
class AlertState:
    """What the rules remember: when each key last fired, recent DLQ totals, the last summary day."""

    fired_at: dict[str, datetime] = field(default_factory=dict)
    dlq_samples: deque[tuple[datetime, dict[str, int]]] = field(default_factory=deque)
    summary_done: date | None = None
    flows_running: set[str] = field(default_factory=set)


def _money(value: float) -> str:
    return f"{value:,.2f}"


class AlertRules:
    """Turns observations into alerts; see the module docstring for the rules."""

    def __init__(self, config: AlertConfig, state: AlertState | None = None) -> None:
        self.config = config
        self.state = state or AlertState()

    def _fire(self, alert: Alert) -> list[Alert]:
        last = self.state.fired_at.get(alert.key)
        if last is not None and alert.at - last < timedelta(seconds=self.config.cooldown_s):
            return []
        self.state.fired_at[alert.key] = alert.at
        return [alert]

    def on_message(self, message: TailMessage, now: datetime) -> list[Alert]:
        """A tailed message: a ``halted`` rejection or an ``authentication`` dead letter alerts."""
        value = message.value or {}
        data = value.get("data") or {}
        if value.get("type") == "rejected_signal" and (data.get("risk_checks") or {}).get("halted") is False:
            signal = data.get("original_signal") or {}
            broker, strategy = value.get("broker", "?"), signal.get("strategy_id", "?")
            return self._fire(
                Alert(
                    kind="halted",
                    key=f"halted:{broker}:{strategy}",
                    severity="critical",
                    title=f"{broker}: trading halted for {strategy}",
                    text=f"signals of {broker}/{strategy} are rejected: {data.get('rejection_reason', '')}",
                    at=now,
                    details={"broker": broker, "strategy_id": strategy, "topic": message.topic},
                )
            )
        failure = data.get("failure_info") or {}
        if is_dlq(message.topic) and failure.get("error_type") == "authentication":
            original = (data.get("dlq_metadata") or {}).get("original_topic", message.topic)
            return self._fire(
                Alert(
                    kind="authentication",
                    key=f"authentication:{original}",
                    severity="critical",
                    title=f"authentication failure on {original}",
                    text=(
                        f"{failure.get('error_class', 'error')} in "
                        f"{(data.get('dlq_metadata') or {}).get('service_name', '?')}; "
                        f"message dead-lettered to {message.topic}"
                    ),
                    at=now,
                    details={"original_topic": original, "dlq_topic": message.topic},
                )
            )
        return []

    def on_health(
        self,
        now: datetime,
        *,
        dlq_totals: Mapping[str, int],
        lag: Mapping[tuple[str, str, int], int],
        flows: Mapping[str, bool] | None = None,
    ) -> list[Alert]:
        """Health observations: DLQ totals per topic, lag per (dataflow, topic, partition), flows running.

        A dataflow alerts when it was running at the previous look and is not now
        (one already stopped when the rules started does not).
        """
        alerts: list[Alert] = []
        running = {name for name, alive in (flows or {}).items() if alive}
        for name in sorted(self.state.flows_running - running):
            alerts += self._fire(
                Alert("dataflow_down", f"dataflow_down:{name}", "critical", f"dataflow {name} stopped",
                      f"the process of dataflow {name} is no longer running; see its log", now,
                      {"dataflow": name})
            )  # fmt: skip
        self.state.flows_running = running
        alerts += self._dlq_rate(now, dlq_totals)
        behind: dict[tuple[str, str], int] = {}
        for (flow, topic, _partition), messages in lag.items():
            behind[(flow, topic)] = behind.get((flow, topic), 0) + messages
        for (flow, topic), messages in sorted(behind.items()):
            if messages > self.config.lag_messages:
                alerts += self._fire(
                    Alert("lag", f"lag:{flow}:{topic}", "warning",
                          f"{flow} is {messages:,} messages behind on {topic}",
                          f"consumer lag {messages:,} > threshold {self.config.lag_messages:,}", now,
                          {"dataflow": flow, "topic": topic, "lag": messages})
                )  # fmt: skip
        return alerts

    def _dlq_rate(self, now: datetime, totals: Mapping[str, int]) -> list[Alert]:
        """Dead letters per minute in the trailing minute (one burst is counted over a whole minute)."""
        samples = self.state.dlq_samples
        samples.append((now, dict(totals)))
        window_start = now - DLQ_WINDOW
        while len(samples) > 1 and samples[1][0] <= window_start:
            samples.popleft()  # keep the newest sample at or before the window as the baseline
        seen_at, before = samples[0]
        if seen_at >= now:
            return []
        elapsed_s = (now - seen_at).total_seconds()
        minutes = max(1.0, elapsed_s / 60)
        alerts: list[Alert] = []
        for topic, total in sorted(totals.items()):
            arrived = total - before.get(topic, total)
            rate = arrived / minutes
            if arrived > 0 and rate > self.config.dlq_per_minute:
                alerts += self._fire(
                    Alert("dlq_rate", f"dlq_rate:{topic}", "warning",
                          f"{arrived:,} dead letters on {topic} in the last {elapsed_s:.0f} s",
                          f"{rate:,.1f} per minute > threshold {self.config.dlq_per_minute:,.1f}", now,
                          {"topic": topic, "dead_letters": arrived, "per_minute": round(rate, 3)})
                )  # fmt: skip
        return alerts

    def on_clock(self, now: datetime, accounts: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> list[Alert]:
        """Once per UTC day, at or after ``daily_at``: the P&L of every account and of the book.

        A day whose summary time had already passed when the rules first
        looked at the clock gets no summary (nothing is sent on start-up).
        """
        daily_at = self.config.daily_at
        if daily_at is None:
            return []
        today, due = now.date(), now.timetz().replace(tzinfo=None) >= daily_at
        if self.state.summary_done is None:
            self.state.summary_done = today if due else today - timedelta(days=1)
            return []
        if not due or self.state.summary_done >= today:
            return []
        self.state.summary_done = today
        lines, rows, book = [], [], 0.0
        for broker in sorted(accounts):
            for strategy, snap in sorted(accounts[broker].items()):
                total = float(snap.get("total_pnl", 0.0))
                book += total
                rows.append({"broker": broker, "strategy_id": strategy, "total_pnl": total,
                             "realized_pnl": float(snap.get("realized_pnl", 0.0)),
                             "fees_paid": float(snap.get("fees_paid", 0.0))})  # fmt: skip
                lines.append(f"{broker}/{strategy}: {_money(total)}")
        lines.append(f"book: {_money(book)}")
        return [
            Alert("daily_summary", f"daily_summary:{today.isoformat()}", "info",
                  f"daily P&L {today.isoformat()}: {_money(book)}", "\n".join(lines), now,
                  {"date": today.isoformat(), "book_total_pnl": book, "accounts": rows})
        ]  # fmt: skip


@dataclass(frozen=True)
class HealthView:
    """What the watcher needs from a health check."""

    dlq_totals: dict[str, int]
    lag: dict[tuple[str, str, int], int]
    flows: dict[str, bool]


class AlertWatcher:
    """Runs :class:`AlertRules` in a thread every ``check_s`` and posts what fires.

    ``health`` and ``accounts`` are called on the watcher's thread; messages
    arrive through :meth:`on_message` from the topic tail (only those
    produced after the watcher started count). ``clock`` returns aware UTC.
    """

    def __init__(  # the collaborators are plain keywords
        self,
        rules: AlertRules,
        notifier: WebhookNotifier,
        *,
        health: Callable[[], HealthView | None],
        accounts: Callable[[], Mapping[str, Mapping[str, Mapping[str, Any]]]],
        check_s: float,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._rules = rules
        self._notifier = notifier
        self._health = health
        self._accounts = accounts
        self._check_s = check_s
        self._clock = clock
        self._started_ms = int(clock().timestamp() * 1000)
        self._inbox: queue.Queue[TailMessage] = queue.Queue(maxsize=10_000)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.sent: list[tuple[Alert, list[Delivery]]] = []
        """Every alert posted so far with its deliveries, newest last (bounded to 200)."""

    def on_message(self, message: TailMessage) -> None:
        """Queue a tailed message for the rules (non-blocking; drops when the queue is full)."""
        if (message.timestamp_ms or 0) >= self._started_ms:
            try:
                self._inbox.put_nowait(message)
            except queue.Full:
                log.warning("alert watcher: inbox full, dropping a message of %s", message.topic)

    def check(self) -> list[Alert]:
        """One round: queued messages, health, the clock; posts and returns what fired."""
        now = self._clock()
        fired: list[Alert] = []
        while True:
            try:
                fired += self._rules.on_message(self._inbox.get_nowait(), now)
            except queue.Empty:
                break
        view = self._health()
        if view is not None:
            fired += self._rules.on_health(now, dlq_totals=view.dlq_totals, lag=view.lag, flows=view.flows)
        try:
            fired += self._rules.on_clock(now, self._accounts())
        except Exception as err:  # a failed read skips this round's summary check
            log.warning("alert watcher: reading accounts failed: %s", err)
        for alert in fired:
            log.info("alert %s: %s", alert.kind, alert.title)
            self.sent.append((alert, self._notifier.send(alert.payload(), alert.message())))
        del self.sent[:-200]
        return fired

    def start(self) -> AlertWatcher:
        """Check every ``check_s`` in a daemon thread."""
        self._thread = threading.Thread(target=self._run, name="alert-watcher", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self._check_s):
            try:
                self.check()
            except Exception:
                log.exception("alert watcher: check failed")

    def stop(self) -> None:
        """Stop the thread (the notifier is closed by its owner)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
