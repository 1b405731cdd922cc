"""What every ``alpha-panda`` command shares: the consoles, the error exit, where the servers are."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from schemas.errors import AlphaPandaError

# Tables stay readable when piped or captured (no terminal to measure).
console = Console(width=None if Console().is_terminal else 120)
err_console = Console(stderr=True)

DataDir = Annotated[Path | None, typer.Option(help="State directory (default: DATA_DIR, .alpha-panda).")]
Mode = Annotated[str, typer.Option(help="all-in-one (one `pipeline` flow) or per-stage (four flows).")]


def fail(err: Exception) -> typer.Exit:
    """Print ``err`` as the command's error and return the exit (code 2) to raise."""
    err_console.print(f"[bold red]error:[/] {err}")
    return typer.Exit(code=2)


def local_stack(data_dir: Path | None) -> Any:
    """The local stack under ``data_dir`` (default ``DATA_DIR``)."""
    from alpha_panda.localstack import LocalStack
    from dataflows.settings import get_settings

    return LocalStack(data_dir or get_settings().data_dir)


def external_urls() -> dict[str, str | None]:
    """The server URLs the settings give (None: let the local stack start its own)."""
    from dataflows.settings import get_settings

    settings = get_settings()
    return {
        "kafka_url": settings.kafka_bootstrap_servers or None,
        "redis_url": settings.redis_url.get_secret_value() or None,
        "postgres_url": settings.postgres_url.get_secret_value() or None,
    }


def check_mode(mode: str) -> tuple[str, ...]:
    """The dataflows of ``--mode``; a CLI error for an unknown mode."""
    from alpha_panda.orchestration import DATAFLOW_SETS

    if mode not in DATAFLOW_SETS:
        raise fail(ValueError(f"--mode must be one of {sorted(DATAFLOW_SETS)}, got {mode!r}"))
    return DATAFLOW_SETS[mode]


def postgres_url_or_fail(data_dir: Path | None) -> str:
    """``POSTGRES_URL``, else the local stack's; a CLI error when neither."""
    from connectors.localstack import POSTGRES

    return str(urls_or_fail(data_dir, need=(POSTGRES,)).postgres)


def urls_or_fail(data_dir: Path | None, need: tuple[str, ...] | None = None) -> Any:
    """The configured servers, else the local stack's (under ``data_dir``); a CLI error when neither."""
    from connectors.localstack import SERVERS
    from dataflows.runtime.servers import resolve_servers
    from dataflows.settings import get_settings

    try:
        return resolve_servers(get_settings(), need=need or SERVERS, data_dir=data_dir)
    except AlphaPandaError as err:
        raise fail(err) from err
