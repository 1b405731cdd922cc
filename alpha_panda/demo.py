"""``alpha-panda demo``: the whole live pipeline on the local stack, end to end.

Starts Kafka-API (Tansu), Redis and PostgreSQL, creates topics, migrates,
seeds strategies for a simulated market, starts the dataflows and the
market feed, shows live progress, waits until the pipeline has drained,
and prints a summary read back from Redis and the Postgres ledger.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from pathlib import Path

from pydantic import SecretStr
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from alpha_panda import orchestration
from alpha_panda.dashboard.server import RunningDashboard, start_dashboard
from alpha_panda.localstack import LocalStack
from connectors.errors import redact_url
from connectors.localstack import StackUrls
from dataflows.settings import Settings, get_settings
from schemas.errors import AlphaPandaError

SETTLE_S = 4.0
"""The pipeline has drained when nothing changed for this long after the feed ended."""


def _progress_table(progress: orchestration.Progress, elapsed: float, feed_running: bool) -> Table:
    table = Table(title=f"live: {elapsed:5.1f} s, feed {'running' if feed_running else 'done, draining'}")
    for name in ("broker", "signals", "fills (topic)", "fills (ledger)", "P&L (Redis)"):
        table.add_column(name, justify="right" if name != "broker" else "left")
    for broker in progress.signals:
        table.add_row(
            broker,
            f"{progress.signals[broker]:,}",
            f"{progress.fills_published[broker]:,}",
            f"{progress.ledger[broker].get('fills', 0):,}",
            f"{progress.pnl[broker]:,.2f}",
        )
    table.caption = f"ticks on market.ticks: {progress.ticks:,}   dead letters: {progress.dead_letters:,}"
    return table


def _summary(progress: orchestration.Progress) -> Table:
    table = Table(title="Result (portfolios from Redis, orders from the Postgres ledger)")
    for name in ("broker", "strategy", "cash", "positions", "realized", "unrealized", "fees", "total P&L"):
        table.add_column(name, justify="left" if name in ("broker", "strategy") else "right", no_wrap=True)
    for broker, accounts in progress.accounts.items():
        for strategy_id, snap in sorted(accounts.items()):
            held = sum(1 for p in snap["positions"].values() if p["quantity"])
            colour = "green" if snap["total_pnl"] >= 0 else "red"
            table.add_row(
                broker,
                strategy_id,
                f"{snap['cash']:,.2f}",
                str(held),
                f"{snap['realized_pnl']:,.2f}",
                f"{snap['unrealized_pnl']:,.2f}",
                f"{snap['fees_paid']:,.2f}",
                f"[{colour}]{snap['total_pnl']:,.2f}[/]",
            )
    return table


def run_demo(
    *,
    data_dir: Path,
    duration: float,
    rate: float,
    instruments: int,
    flows: Sequence[str],
    keep: bool,
    console: Console,
    external: dict[str, str | None],
    dashboard: bool = False,
) -> bool:
    """Run the demo; return ``True`` when both brokers ended with fills in the ledger.

    With ``dashboard``, the dashboard serves from the start of the run and,
    once the result is printed, keeps serving (stack up) until Ctrl-C.
    """
    settings = get_settings()
    stack = LocalStack(data_dir)
    orchestration.stop_dataflows(stack)
    stack.remove()  # a fresh market every time
    running: RunningDashboard | None = None
    try:
        with console.status("starting Kafka-API broker, Redis and PostgreSQL"):
            urls = stack.up(**external)
        tokens = orchestration.demo_tokens(instruments)
        orchestration.bootstrap(urls, settings, orchestration.demo_strategy_rows(tokens))
        console.print(
            f"servers up (kafka {urls.kafka}, redis {redact_url(urls.redis)}); "
            "topics, tables and 3 strategies ready"
        )
        if dashboard:
            running, url = _start_dashboard(settings, urls, stack)
            console.print(f"dashboard: [bold]{url}[/]")
        for name in flows:
            # A one-minute market trades more than a day's default limit of 50.
            orchestration.start_dataflow(stack, name, urls, env={"MAX_DAILY_TRADES": "100000"})
        limit = int(rate * duration)
        feed_env = orchestration.simulated_feed_env(rate, instruments, limit)
        orchestration.start_dataflow(stack, "market_feed", urls, env=feed_env, recovery=False)
        console.print(
            f"dataflows {', '.join(flows)} and market_feed started ({limit:,} ticks at {rate:,.0f}/s)"
        )
        progress = _watch(stack, urls, settings.active_brokers, flows, duration, console)
        console.print(_summary(progress))
        ok = all(progress.ledger[b].get("fills", 0) > 0 for b in settings.active_brokers)
        verdict = "[green]fills on every broker[/]" if ok else "[red]a broker ended without fills[/]"
        console.print(f"{progress.ticks:,} ticks -> {verdict}; logs under {stack.logs_dir}")
        if running is not None:
            console.print(f"the stack stays up; dashboard at [bold]{url}[/] (Ctrl-C stops it)")
            _wait_for_interrupt(running)
        return ok
    finally:
        if running is not None:
            running.stop()
        if not keep:
            orchestration.stop_dataflows(stack)
            stack.down()


def _start_dashboard(settings: Settings, urls: StackUrls, stack: LocalStack) -> tuple[RunningDashboard, str]:
    """Serve the dashboard over the demo's stack; return it and the URL to open.

    Without ``DASHBOARD_TOKEN`` a random token is made for this run and put
    in the URL's fragment (``#token=``), which the page trades for a login
    cookie; a fragment never reaches the server or its logs.
    """
    token = settings.dashboard_token.get_secret_value()
    generated = not token
    if generated:
        token = secrets.token_urlsafe(24)
        settings = settings.model_copy(update={"dashboard_token": SecretStr(token)})
    running = start_dashboard(settings, urls, stack)
    return (
        running,
        f"{running.url}#token={token}" if generated else f"{running.url} (sign in with DASHBOARD_TOKEN)",
    )


def _wait_for_interrupt(running: RunningDashboard) -> None:
    try:
        while running.thread.is_alive():
            running.thread.join(0.5)
    except KeyboardInterrupt:
        pass


def _watch(
    stack: LocalStack,
    urls: object,
    brokers: Sequence[str],
    flows: Sequence[str],
    duration: float,
    console: Console,
) -> orchestration.Progress:
    start = time.monotonic()
    deadline = start + duration + 120
    last_change, last_seen = time.monotonic(), None
    progress = orchestration.read_progress(urls, brokers)  # type: ignore[arg-type]
    with Live(console=console, refresh_per_second=2, transient=False) as live:
        while time.monotonic() < deadline:
            time.sleep(1.0)
            for name in flows:
                if stack.process(name) is None:
                    msg = f"dataflow {name} exited; see {stack.log_path(name)}"
                    raise AlphaPandaError(msg)
            progress = orchestration.read_progress(urls, brokers)  # type: ignore[arg-type]
            feed_running = stack.process("market_feed") is not None
            live.update(Group(_progress_table(progress, time.monotonic() - start, feed_running)))
            seen = (
                progress.ticks,
                tuple(progress.signals.values()),
                tuple(str(v) for v in progress.ledger.values()),
            )
            if seen != last_seen:
                last_seen, last_change = seen, time.monotonic()
            elif not feed_running and time.monotonic() - last_change > SETTLE_S:
                break
    console.print()
    return progress
