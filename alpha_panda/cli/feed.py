"""``alpha-panda feed``: publish bar history or a tick file to ``market.ticks`` (no dataflow)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from alpha_panda.cli.console import console, fail
from alpha_panda.cli.marketdata import (
    MarketDataCliError,
    cli_settings,
    database,
    kafka_bootstrap,
    parse_time,
    postgres_url,
    progress_bar,
    split_list,
)
from schemas.errors import AlphaPandaError

if TYPE_CHECKING:
    import psycopg

    from connectors.marketdata.bars import Bar


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


def feed_command(  # one parameter per option
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
    from connectors.kafka.admin import create_topics
    from connectors.marketdata.backfill import parse_speed, read_history_file
    from connectors.marketdata.publish import bar_messages, file_kind, publish_ticks, tick_file_messages
    from connectors.marketdata.store import count_bars, stored_bars
    from schemas.topics import MARKET_TICKS, dlq_topic

    began = time.monotonic()
    try:
        pace = parse_speed(speed)
        first, last = parse_time(start, "--start"), parse_time(end, "--end")
        settings = cli_settings()
        bootstrap = kafka_bootstrap(settings)
        if source == "postgres":
            url = postgres_url(settings)
            with database(url) as conn:
                wanted = _tokens(conn, split_list(tokens))
                total = count_bars(conn, tokens=wanted, start=first, end=last)
            messages: Any = bar_messages(stored_bars(url, tokens=wanted, start=first, end=last))
            what = "bars from market_data"
        else:
            path = Path(source)
            if not path.is_file():
                msg = f"--from must be 'postgres' or an existing file, got {source!r}"
                raise MarketDataCliError(msg)
            if file_kind(path) == "bars":
                with database(postgres_url(settings)) if _has_names(tokens) else _nodatabase() as conn:
                    wanted = _tokens(conn, split_list(tokens))
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
        with progress_bar("feed", quiet) as progress:
            task = progress.add_task(f"{what} at {speed}x", total=total)
            report = publish_ticks(
                bootstrap,
                messages,
                speed=pace,
                batch_size=batch,
                on_progress=lambda n: progress.advance(task, n),
            )
    except AlphaPandaError as err:
        raise fail(err) from err
    elapsed = time.monotonic() - began
    console.print(
        f"published {report.ticks:,} ticks to {MARKET_TICKS} ({what}) in {elapsed:.1f} s"
        f" ({report.ticks / elapsed if elapsed else 0:,.0f}/s); dead letters: {report.dead_letters:,}"
    )


def _has_names(tokens: str | None) -> bool:
    return any(not t.isdigit() for t in split_list(tokens))


@contextmanager
def _nodatabase() -> Iterator[None]:
    yield None


def register(app: typer.Typer) -> None:
    """Add ``feed`` to ``app``."""
    app.command(name="feed")(feed_command)
