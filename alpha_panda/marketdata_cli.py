"""Market-data commands of ``alpha-panda``: ``backfill``, ``feed``, ``instruments load|resolve``.

Registered on the main app by :func:`register`. Servers come from
``POSTGRES_URL`` / ``KAFKA_BOOTSTRAP_SERVERS``, or else from the local stack
that ``alpha-panda up`` recorded under ``DATA_DIR``. Every command that
touches Postgres applies the migrations first (idempotent). Credentials
(``ALPACA_*``, ``KITE_*``) are read from the settings and never printed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from schemas.errors import AlphaPandaError

if TYPE_CHECKING:
    import psycopg

    from connectors.marketdata.bars import Bar
    from dataflows.settings import Settings

console = Console(width=None if Console().is_terminal else 120)
err_console = Console(stderr=True)

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

instruments_app = typer.Typer(no_args_is_help=True, help="The instrument master (Kite instruments CSV).")


class MarketDataCliError(AlphaPandaError):
    """A market-data command was given options it cannot act on."""


def _fail(err: Exception) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {err}")
    return typer.Exit(code=2)


def _settings() -> Settings:
    from dataflows.settings import get_settings

    return get_settings()


def _local_urls(settings: Settings) -> Any:
    from alpha_panda.stack import LocalStack

    return LocalStack(settings.data_dir).urls


def postgres_url(settings: Settings) -> str:
    """``POSTGRES_URL``, else the local stack's; raises a CLI error naming both."""
    url = settings.postgres_url.get_secret_value()
    if url:
        return url
    local = _local_urls(settings)
    if local is None:
        msg = f"no PostgreSQL: set POSTGRES_URL or run `alpha-panda up` (no stack under {settings.data_dir})"
        raise MarketDataCliError(msg)
    return str(local.postgres)


def kafka_bootstrap(settings: Settings) -> str:
    """``KAFKA_BOOTSTRAP_SERVERS``, else the local stack's; raises a CLI error naming both."""
    if settings.kafka_bootstrap_servers:
        return settings.kafka_bootstrap_servers
    local = _local_urls(settings)
    if local is None:
        msg = (
            "no Kafka: set KAFKA_BOOTSTRAP_SERVERS or run `alpha-panda up` "
            f"(no stack under {settings.data_dir})"
        )
        raise MarketDataCliError(msg)
    return str(local.kafka)


@contextmanager
def _database(url: str) -> Iterator[psycopg.Connection]:
    """Apply the migrations, then yield one connection to ``url`` (password never shown)."""
    import psycopg

    from connectors.errors import describe_error, redact_url
    from connectors.marketdata.errors import HistoryStoreError
    from connectors.postgres import apply_migrations

    apply_migrations(url)
    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            yield conn
    except psycopg.Error as err:
        msg = f"PostgreSQL at {redact_url(url)}: {type(err).__name__}: {describe_error(err, url)}"
        raise HistoryStoreError(msg) from err


def parse_time(value: str | None, option: str) -> datetime | None:
    """Parse ``2024-01-01`` or an ISO-8601 time (naive = UTC) given to ``option``."""
    if value is None:
        return None
    from schemas.envelope import as_utc

    try:
        return as_utc(datetime.fromisoformat(value.strip()))
    except ValueError as err:
        msg = f"{option} must be a date (2024-01-01) or ISO-8601 time, got {value!r}"
        raise MarketDataCliError(msg) from err


def _split(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def _progress(label: str, quiet: bool) -> Progress:
    columns = (
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
    )
    return Progress(*columns, console=err_console, disable=quiet, transient=True)


# --- backfill ------------------------------------------------------------------------------


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
        names = list(dict.fromkeys(s.upper() for s in _split(symbols)))
        if not names:
            msg = "--symbols is empty"
            raise MarketDataCliError(msg)
        first, last = parse_time(start, "--start"), parse_time(end, "--end")
        if first is None or last is None or last <= first:
            msg = f"--end ({end}) must be after --start ({start})"
            raise MarketDataCliError(msg)
        settings = _settings()
        fetch = _fetcher(source, settings, first, last, interval)
        with _database(postgres_url(settings)) as conn, _progress("backfill", quiet) as progress:
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
        raise _fail(err) from err
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


# --- instruments ---------------------------------------------------------------------------


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
        settings = _settings()
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
        with _database(postgres_url(settings)) as conn, _progress("instruments", False) as progress:
            task = progress.add_task("", total=len(rows))
            for offset in range(0, len(rows), batch):
                progress.advance(task, upsert_instruments(conn, rows[offset : offset + batch]))
    except (AlphaPandaError, OSError) as err:
        raise _fail(err) from err
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
        with _database(postgres_url(_settings())) as conn:
            resolver = InstrumentResolver(lookup_instruments(conn, names))
    except AlphaPandaError as err:
        raise _fail(err) from err
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


# --- feed ----------------------------------------------------------------------------------


def _tokens(conn: psycopg.Connection | None, given: list[str]) -> list[int] | None:
    from connectors.marketdata.instruments import InstrumentResolver
    from connectors.marketdata.store import lookup_instruments

    if not given:
        return None
    names = [g for g in given if not g.isdigit()]
    if names and conn is None:
        msg = f"--tokens names {names} need the instruments table; give tokens instead"
        raise MarketDataCliError(msg)
    resolver = InstrumentResolver(lookup_instruments(conn, names) if conn is not None and names else [])
    return [int(g) if g.isdigit() else resolver.resolve(g) for g in given]


def _bar_filter(
    bars: list[Bar], tokens: list[int] | None, start: datetime | None, end: datetime | None
) -> list[Bar]:
    wanted = set(tokens) if tokens is not None else None
    return [
        b
        for b in bars
        if (wanted is None or b.instrument_token in wanted)
        and (start is None or b.timestamp >= start)
        and (end is None or b.timestamp < end)
    ]


def _count_lines(path: Path) -> int:
    from connectors.parquet_ticks import is_parquet, parquet_row_count

    if is_parquet(path):
        return parquet_row_count(path)
    with path.open("rb") as handle:
        count = sum(1 for line in handle if line.strip())
    return count - 1 if path.suffix.lower() == ".csv" else count


def feed_command(  # noqa: PLR0913 - one parameter per option
    source: Annotated[
        str,
        typer.Option(
            "--from",
            help="postgres (market_data), or a file: ticks (JSONL/CSV/Parquet, as replay reads) "
            "or bars (CSV/JSONL).",
        ),
    ],
    speed: Annotated[str, typer.Option(help="Event time vs real time: 1, 10, any number, or max.")] = "max",
    tokens: Annotated[
        str | None, typer.Option(help="Only these instruments: tokens or EXCHANGE:SYMBOL, comma-separated.")
    ] = None,
    start: Annotated[str | None, typer.Option(help="First bar time (inclusive), e.g. 2024-01-01.")] = None,
    end: Annotated[str | None, typer.Option(help="End of history (exclusive).")] = None,
    batch: Annotated[int, typer.Option(min=1, help="Messages per acknowledged Kafka batch.")] = 5000,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Publish history to `market.ticks` in timestamp order (bar close as `last_price`).

    Produced directly with Kafka producers in acknowledged batches (no
    Bytewax flow); the envelopes equal those of `dataflows.market_feed`
    with FEED_SOURCE=postgres. Undecodable tick-file lines go to
    `market.ticks.dlq`, as in `alpha-panda replay`.
    """
    from connectors.kafka import create_topics
    from connectors.marketdata.backfill import parse_speed, read_history_file
    from connectors.marketdata.publish import bar_messages, file_kind, publish_ticks, tick_file_messages
    from connectors.marketdata.store import count_bars, stored_bars
    from schemas.topics import MARKET_TICKS, dlq_topic

    began = time.monotonic()
    try:
        pace = parse_speed(speed)
        first, last = parse_time(start, "--start"), parse_time(end, "--end")
        settings = _settings()
        bootstrap = kafka_bootstrap(settings)
        if source == "postgres":
            url = postgres_url(settings)
            with _database(url) as conn:
                wanted = _tokens(conn, _split(tokens))
                total = count_bars(conn, tokens=wanted, start=first, end=last)
            messages: Any = bar_messages(stored_bars(url, tokens=wanted, start=first, end=last))
            what = "bars from market_data"
        else:
            path = Path(source)
            if not path.is_file():
                msg = f"--from must be 'postgres' or an existing file, got {source!r}"
                raise MarketDataCliError(msg)
            if file_kind(path) == "bars":
                with _database(postgres_url(settings)) if _has_names(tokens) else _no_database() as conn:
                    wanted = _tokens(conn, _split(tokens))
                bars = _bar_filter(read_history_file(path), wanted, first, last)
                total, messages, what = len(bars), bar_messages(bars), f"bars from {path}"
            else:
                if tokens or start or end:
                    msg = "--tokens, --start and --end filter bar histories, not tick files"
                    raise MarketDataCliError(msg)
                total, messages, what = _count_lines(path), tick_file_messages(path), f"ticks from {path}"
        create_topics(
            bootstrap,
            [MARKET_TICKS, dlq_topic(MARKET_TICKS)],
            settings.topic_partitions,
            settings.topic_retention_ms,
        )
        with _progress("feed", quiet) as progress:
            task = progress.add_task(f"{what} at {speed}x", total=total)
            report = publish_ticks(
                bootstrap,
                messages,
                speed=pace,
                batch_size=batch,
                on_progress=lambda n: progress.advance(task, n),
            )
    except AlphaPandaError as err:
        raise _fail(err) from err
    elapsed = time.monotonic() - began
    console.print(
        f"published {report.ticks:,} ticks to {MARKET_TICKS} ({what}) in {elapsed:.1f} s"
        f" ({report.ticks / elapsed if elapsed else 0:,.0f}/s); dead letters: {report.dead_letters:,}"
    )


def _has_names(tokens: str | None) -> bool:
    return any(not t.isdigit() for t in _split(tokens))


@contextmanager
def _no_database() -> Iterator[None]:
    yield None


def register(app: typer.Typer) -> None:
    """Add ``backfill``, ``feed`` and ``instruments load|resolve`` to ``app``."""
    app.command(name="backfill")(backfill_command)
    app.command(name="feed")(feed_command)
    app.add_typer(instruments_app, name="instruments")
