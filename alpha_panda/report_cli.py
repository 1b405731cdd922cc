"""``alpha-panda report``: registered on the main app by :func:`register`.

``--from DIR`` reads a replay output directory; ``--from ledger`` reads the
Postgres ledger (``POSTGRES_URL``, else the local stack's). Bad usage exits
with code 2 and a message naming the option or the input.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Final

import typer
from rich.console import Console

from schemas.errors import AlphaPandaError

LEDGER: Final = "ledger"
DEFAULT_LEDGER_OUT: Final = Path("out/ledger-report")

console = Console(width=None if Console().is_terminal else 120)
err_console = Console(stderr=True)


def _fail(err: Exception) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {err}")
    return typer.Exit(code=2)


def report_command(
    source: Annotated[
        str,
        typer.Option("--from", help="A replay output directory, or `ledger` for the Postgres ledger."),
    ],
    out: Annotated[
        Path | None,
        typer.Option(help=f"Output directory (default: DIR itself; {DEFAULT_LEDGER_OUT} for the ledger)."),
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Start of the report (ISO-8601 or a date; naive = UTC), inclusive.")
    ] = None,
    until: Annotated[str | None, typer.Option(help="End of the report, inclusive.")] = None,
    interval: Annotated[
        str | None,
        typer.Option(help="Return interval (1s, 5m, 1h, 1d); default: the smallest giving <= 500 intervals."),
    ] = None,
) -> None:
    """Write report.html (self-contained, plotly) and report.json: equity, drawdown, stats, round trips."""
    from alpha_panda.cli.marketdata import parse_time, postgres_url
    from alpha_panda.report import ReportOptions, parse_interval, report_from_dir, report_from_ledger
    from dataflows.settings import get_settings

    try:
        options = ReportOptions(
            since=parse_time(since, "--since"),
            until=parse_time(until, "--until"),
            interval=parse_interval(interval) if interval else None,
        )
        if source == LEDGER:
            settings = get_settings()
            url = postgres_url(settings)
            with err_console.status("reading the ledger"):
                path = report_from_ledger(url, out or DEFAULT_LEDGER_OUT, settings.starting_cash, options)
        else:
            path = report_from_dir(Path(source), out, options)
    except AlphaPandaError as err:
        raise _fail(err) from err
    console.print(f"report: {path} and {path.with_name('report.json')}")


def register(app: typer.Typer) -> None:
    """Add ``report`` to ``app``."""
    app.command(name="report")(report_command)
