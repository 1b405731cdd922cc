"""``alpha-panda instruments load|resolve``: the instrument master (Kite instruments CSV)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from alpha_panda.cli.console import console, err_console, fail
from alpha_panda.cli.marketdata import (
    MarketDataCliError,
    cli_settings,
    database,
    postgres_url,
    progress_bar,
)
from schemas.errors import AlphaPandaError

if TYPE_CHECKING:
    pass

instruments_app = typer.Typer(no_args_is_help=True, help="The instrument master (Kite instruments CSV).")


@instruments_app.command("load")
def instruments_load(
    file: Annotated[
        Path | None,
        typer.Option(help="Kite instruments CSV; without it, download with KITE_* credentials.", exists=True),
    ] = None,
    exchange: Annotated[str | None, typer.Option(help="Download only this exchange (NSE, NFO...).")] = None,
    batch: Annotated[int, typer.Option(min=1, help="Rows per upsert statement.")] = 5000,
) -> None:
    """Load the Kite instrument master into the `instruments` table (upserts by token)."""
    from collections import Counter

    from connectors.marketdata.instruments import fetch_kite_instruments, parse_kite_instruments
    from connectors.marketdata.store import upsert_instruments

    try:
        settings = cli_settings()
        if file is not None:
            rows = list(parse_kite_instruments(file.read_text(encoding="utf-8-sig")))
        else:
            credentials = (settings.kite_api_key, settings.kite_access_token)
            if not all(c.get_secret_value() for c in credentials):
                msg = "without --file, KITE_API_KEY and KITE_ACCESS_TOKEN are needed to download"
                raise MarketDataCliError(msg)
            with err_console.status(f"downloading instruments from {settings.kite_api_url}"):
                rows = fetch_kite_instruments(
                    settings.kite_api_key,
                    settings.kite_access_token,
                    base_url=settings.kite_api_url,
                    exchange=exchange,
                )
        with database(postgres_url(settings)) as conn, progress_bar("instruments", False) as progress:
            task = progress.add_task("", total=len(rows))
            for offset in range(0, len(rows), batch):
                progress.advance(task, upsert_instruments(conn, rows[offset : offset + batch]))
    except (AlphaPandaError, OSError) as err:
        raise fail(err) from err
    table = Table(title=f"{len(rows)} instruments loaded")
    table.add_column("exchange")
    table.add_column("instruments", justify="right")
    for name, count in sorted(Counter(r.exchange for r in rows).items()):
        table.add_row(name, f"{count:,}")
    console.print(table)


@instruments_app.command("resolve")
def instruments_resolve(
    names: Annotated[list[str], typer.Argument(help="EXCHANGE:SYMBOL names, e.g. NSE:INFY NSE:TCS.")],
) -> None:
    """Print the instrument token of each EXCHANGE:SYMBOL name (exit 1 if any is unknown)."""
    from connectors.marketdata.errors import InstrumentError
    from connectors.marketdata.instruments import InstrumentResolver
    from connectors.marketdata.store import lookup_instruments

    try:
        with database(postgres_url(cli_settings())) as conn:
            resolver = InstrumentResolver(lookup_instruments(conn, names))
    except AlphaPandaError as err:
        raise fail(err) from err
    table = Table(title="Instruments")
    for column in ("name", "instrument_token", "name (company)", "type", "segment", "lot", "tick"):
        table.add_column(column, justify="right" if column in ("instrument_token", "lot", "tick") else "left")
    errors = []
    for name in names:
        try:
            found = resolver.instrument(name)
        except InstrumentError as err:
            errors.append(str(err))
            continue
        table.add_row(
            found.key,
            str(found.instrument_token),
            found.name,
            found.instrument_type,
            found.segment,
            str(found.lot_size),
            f"{found.tick_size:g}",
        )
    if table.row_count:
        console.print(table)
    for message in errors:
        err_console.print(f"[bold red]error:[/] {message}")
    if errors:
        raise typer.Exit(code=1)


def register(app: typer.Typer) -> None:
    """Add the ``instruments`` group to ``app``."""
    app.add_typer(instruments_app, name="instruments")
