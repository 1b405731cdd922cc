"""``alpha-panda pnl close-day``: the day's closing P&L of every account, from Redis into Postgres.

Reads the latest snapshot of each account (``<broker>:portfolio:<strategy>``
in Redis, for every broker in ``ACTIVE_BROKERS``), applies the migrations,
and upserts one ``daily_pnl`` row per account for the trading date. An
account with no snapshot that day keeps its last one (its positions carry
over); the table says how many such rows are older than the day.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated
from zoneinfo import ZoneInfo

import typer
from rich.console import Console
from rich.table import Table

from schemas.errors import AlphaPandaError

console = Console(width=None if Console().is_terminal else 120)
err_console = Console(stderr=True)


def _servers() -> tuple[str, str, tuple[str, ...]]:
    """(Redis URL, Postgres URL, active brokers): from settings, else the local stack."""
    from connectors.localstack import POSTGRES, REDIS
    from dataflows.runtime.servers import resolve_servers
    from dataflows.settings import get_settings

    settings = get_settings()
    servers = resolve_servers(settings, need=(REDIS, POSTGRES))
    return servers.redis, servers.postgres, tuple(settings.active_brokers)


def close_day(
    day: Annotated[
        str | None, typer.Option("--date", help="The trading day, YYYY-MM-DD (default: today).")
    ] = None,
    timezone: Annotated[
        str, typer.Option(envvar="SCHEDULE_TIMEZONE", help="Market time zone that decides 'today'.")
    ] = "Asia/Kolkata",
) -> None:
    """Record each account's latest P&L snapshot as the day's close in Postgres `daily_pnl`."""
    from connectors.daily_pnl import rows_for_day, upsert_daily_pnl
    from connectors.postgres import apply_migrations
    from connectors.redis_portfolio import read_portfolios

    zone = ZoneInfo(timezone)
    try:
        trading_date = date.fromisoformat(day) if day else datetime.now(zone).date()
        redis_url, postgres_url, brokers = _servers()
        rows = rows_for_day(trading_date, {b: read_portfolios(redis_url, b) for b in brokers})
        apply_migrations(postgres_url)
        written = upsert_daily_pnl(postgres_url, rows)
    except (AlphaPandaError, ValueError) as err:
        err_console.print(f"[bold red]error:[/] {err}")
        raise typer.Exit(code=2) from err
    table = Table(title=f"daily P&L {trading_date.isoformat()}")
    for name in ("broker", "strategy", "total P&L", "total value", "snapshot"):
        table.add_column(name, justify="right" if name.startswith("total") else "left")
    stale = 0
    for r in rows:
        older = r.snapshot_ts.astimezone(zone).date() < trading_date
        stale += older
        table.add_row(
            r.broker,
            r.strategy_id,
            f"{r.money[3]:,.2f}",
            f"{r.money[5]:,.2f}",
            r.snapshot_ts.isoformat() + (" (earlier day)" if older else ""),
        )
    console.print(table)
    console.print(
        f"{written} accounts recorded for {trading_date.isoformat()} in daily_pnl"
        + (f"; {stale} from a snapshot of an earlier day" if stale else ""),
        soft_wrap=True,
    )


def register(app: typer.Typer) -> None:
    """Add the ``pnl`` group to the ``alpha-panda`` app."""
    pnl_app = typer.Typer(no_args_is_help=True, help="Daily P&L records in Postgres.")
    pnl_app.command("close-day")(close_day)
    app.add_typer(pnl_app, name="pnl")
