"""What the market-data commands (``backfill``, ``feed``, ``instruments``) share.

Servers come from
``POSTGRES_URL`` / ``KAFKA_BOOTSTRAP_SERVERS``, or else from the local stack
that ``alpha-panda up`` recorded under ``DATA_DIR``. Every command that
touches Postgres applies the migrations first (idempotent). Credentials
(``ALPACA_*``, ``KITE_*``) are read from the settings and never printed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from alpha_panda.cli.console import err_console
from schemas.errors import AlphaPandaError

if TYPE_CHECKING:
    import psycopg

    from dataflows.settings import Settings


class MarketDataCliError(AlphaPandaError):
    """A market-data command was given options it cannot act on."""


def cli_settings() -> Settings:
    """The settings, read once."""
    from dataflows.settings import get_settings

    return get_settings()


def postgres_url(settings: Settings) -> str:
    """``POSTGRES_URL``, else the local stack's; raises an error naming both."""
    from connectors.localstack import POSTGRES
    from dataflows.runtime.servers import resolve_servers

    return resolve_servers(settings, need=(POSTGRES,)).postgres


def kafka_bootstrap(settings: Settings) -> str:
    """``KAFKA_BOOTSTRAP_SERVERS``, else the local stack's; raises an error naming both."""
    from connectors.localstack import KAFKA
    from dataflows.runtime.servers import resolve_servers

    return resolve_servers(settings, need=(KAFKA,)).kafka


@contextmanager
def database(url: str) -> Iterator[psycopg.Connection]:
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


def split_list(text: str | None) -> list[str]:
    """The non-empty, stripped parts of a comma-separated option."""
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def progress_bar(label: str, quiet: bool) -> Progress:
    """A transient progress bar on stderr (hidden when ``quiet``)."""
    columns = (
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
    )
    return Progress(*columns, console=err_console, disable=quiet, transient=True)
