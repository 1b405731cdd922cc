"""``alpha-panda backfill``: bar history from Alpaca or Yahoo into Postgres ``market_data``."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Final

import typer
from rich.table import Table

from alpha_panda.cli.console import console, fail
from alpha_panda.cli.marketdata import (
    MarketDataCliError,
    cli_settings,
    database,
    parse_time,
    postgres_url,
    progress_bar,
    split_list,
)
from schemas.errors import AlphaPandaError

if TYPE_CHECKING:
    from connectors.marketdata.bars import Bar
    from dataflows.settings import Settings

ALPACA_TIMEFRAMES: Final = {
    "1m": "1Min",
    "5m": "5Min",
    "15m": "15Min",
    "30m": "30Min",
    "1h": "1Hour",
    "60m": "1Hour",
    "1d": "1Day",
    "1wk": "1Week",
    "1mo": "1Month",
}
"""``--interval`` (Yahoo's spelling) -> Alpaca timeframe; Alpaca's own spellings pass through."""


def _fetcher(source: str, settings: Settings, start: datetime, end: datetime, interval: str) -> Any:
    """Return ``symbol -> bars`` for ``source`` with the command's options bound."""
    from connectors.marketdata.alpaca import fetch_alpaca_bars
    from connectors.marketdata.yahoo import fetch_yahoo_bars

    if source == "alpaca":
        if not (settings.alpaca_api_key.get_secret_value() and settings.alpaca_secret_key.get_secret_value()):
            msg = "--source alpaca needs ALPACA_API_KEY and ALPACA_SECRET_KEY"
            raise MarketDataCliError(msg)
        timeframe = ALPACA_TIMEFRAMES.get(interval, interval)

        def alpaca(symbol: str) -> list[Bar]:
            return fetch_alpaca_bars(
                [symbol],
                start,
                end,
                timeframe,
                api_key=settings.alpaca_api_key,
                secret_key=settings.alpaca_secret_key,
                base_url=settings.alpaca_data_url,
            )

        return alpaca

    def yahoo(symbol: str) -> list[Bar]:
        return fetch_yahoo_bars(
            symbol,
            interval=interval,
            start=start,
            end=end,
            base_url=settings.yahoo_url,
            rate_limit_retries=2,
        )

    return yahoo


def backfill_command(
    source: Annotated[str, typer.Option(help="Where bars come from: alpaca or yahoo.")],
    symbols: Annotated[str, typer.Option(help="Comma-separated symbols, e.g. AAPL,MSFT or RELIANCE.NS.")],
    start: Annotated[str, typer.Option(help="First bar time (inclusive), e.g. 2024-01-01 (UTC).")],
    end: Annotated[str, typer.Option(help="End time, e.g. 2024-02-01 (UTC).")],
    interval: Annotated[str, typer.Option(help="Bar size: 1m, 5m, 15m, 30m, 1h, 1d, 1wk, 1mo.")] = "1d",
    concurrency: Annotated[int, typer.Option(min=1, max=32, help="Symbols fetched at once.")] = 4,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Fetch bar history into Postgres `market_data` (upserts: loading twice keeps one row per bar).

    Each symbol is fetched and stored on its own; a symbol that fails
    (unknown, rate-limited, bad response) is reported and the rest go on.
    Exits 1 when any symbol failed, 2 on a setup error.
    """
    from connectors.marketdata.backfill import BackfillProgress, backfill
    from connectors.marketdata.instruments import stable_token
    from connectors.marketdata.store import upsert_bars

    try:
        if source not in ("alpaca", "yahoo"):
            msg = f"--source must be alpaca or yahoo, got {source!r}"
            raise MarketDataCliError(msg)
        names = list(dict.fromkeys(s.upper() for s in split_list(symbols)))
        if not names:
            msg = "--symbols is empty"
            raise MarketDataCliError(msg)
        first, last = parse_time(start, "--start"), parse_time(end, "--end")
        if first is None or last is None or last <= first:
            msg = f"--end ({end}) must be after --start ({start})"
            raise MarketDataCliError(msg)
        settings = cli_settings()
        fetch = _fetcher(source, settings, first, last, interval)
        with database(postgres_url(settings)) as conn, progress_bar("backfill", quiet) as progress:
            task = progress.add_task("", total=len(names))

            def on_progress(step: BackfillProgress) -> None:
                outcome = "[red]failed[/]" if step.error else f"{step.rows} bars"
                progress.update(task, completed=step.done, description=f"{step.symbol}: {outcome}")

            report = backfill(
                names,
                fetch,
                lambda bars: upsert_bars(conn, bars),
                concurrency=concurrency,
                on_progress=on_progress,
            )
    except AlphaPandaError as err:
        raise fail(err) from err
    table = Table(title=f"Backfill from {source} ({interval}, {start} .. {end}) into market_data")
    for column in ("symbol", "token", "bars", "result"):
        table.add_column(column, justify="right" if column in ("token", "bars") else "left")
    for name in names:
        if name in report.loaded:
            table.add_row(name, str(stable_token(name)), str(report.loaded[name]), "[green]ok[/]")
        else:
            table.add_row(name, str(stable_token(name)), "-", f"[red]{report.failed.get(name, '?')}[/]")
    console.print(table)
    console.print(
        f"{len(report.loaded)} of {len(names)} symbols loaded, "
        f"{sum(report.loaded.values())} bars upserted; {len(report.failed)} failed"
    )
    if not report.ok:
        raise typer.Exit(code=1)


def register(app: typer.Typer) -> None:
    """Add ``backfill`` to ``app``."""
    app.command(name="backfill")(backfill_command)
