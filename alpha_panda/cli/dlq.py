"""``alpha-panda dlq list|replay``: inspect and replay dead-letter topics."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from pydantic import SecretStr
from rich.table import Table

from alpha_panda.cli.console import DataDir, console, fail, urls_or_fail
from schemas.errors import AlphaPandaError

dlq_app = typer.Typer(no_args_is_help=True, help="Inspect and replay dead-letter topics (<topic>.dlq).")
DlqTopic = Annotated[str, typer.Option("--topic", help="A dead-letter topic, e.g. paper.orders.filled.dlq.")]


@dlq_app.command(name="list")
def dlq_list(topic: DlqTopic, data_dir: DataDir = None) -> None:
    """Summarise a DLQ: records by original topic and error type, and whether they replay."""
    from alpha_panda.dlq import list_dlq

    try:
        summary = list_dlq(urls_or_fail(data_dir).kafka, topic)
    except AlphaPandaError as err:
        raise fail(err) from err
    table = Table(title=f"{topic}: {summary.total:,} message(s)")
    for name in ("original topic", "error type", "replayable", "count"):
        table.add_column(name, justify="right" if name == "count" else "left")
    for group in summary.groups:
        table.add_row(
            group.original_topic, group.error_type, "yes" if group.replayable else "no", f"{group.count:,}"
        )
    if summary.unreadable:
        table.add_row("-", "not a dlq_record", "no", f"{summary.unreadable:,}")
    console.print(table)


@dlq_app.command(name="replay")
def dlq_replay(
    topic: DlqTopic,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report only; republish nothing.")] = False,
    limit: Annotated[int | None, typer.Option(min=1, help="Republish at most N records.")] = None,
    since: Annotated[
        str | None, typer.Option(help="Only records dead-lettered at or after this ISO-8601 time.")
    ] = None,
    apply: Annotated[
        bool, typer.Option(help="Then store replayed orders and snapshots (dataflows.store_writer).")
    ] = True,
    data_dir: DataDir = None,
) -> None:
    """Republish replayable dead letters to their original topics (idempotent downstream)."""
    from datetime import datetime

    from alpha_panda.dlq import replay_dlq

    try:
        since_at = datetime.fromisoformat(since) if since else None
    except ValueError as err:
        raise fail(ValueError(f"--since must be an ISO-8601 time, got {since!r}")) from err
    urls = urls_or_fail(data_dir)
    try:
        result = replay_dlq(urls.kafka, topic, dry_run=dry_run, limit=limit, since=since_at)
        stored = 0
        if apply and not dry_run and result.total_republished:
            stored = _apply_replayed(urls)
    except AlphaPandaError as err:
        raise fail(err) from err
    verb = "would republish" if dry_run else "republished"
    targets = ", ".join(f"{n:,} to {t}" for t, n in sorted(result.republished.items())) or "nothing"
    console.print(f"{topic}: {verb} {targets}")
    for reason, count in sorted(result.skipped.items()):
        console.print(f"  skipped {count:,}: {reason}")
    if stored:
        console.print("  replayed orders and snapshots written to the ledger and Redis (store_writer)")


def _apply_replayed(urls: Any) -> int:
    """Run ``dataflows.store_writer`` to the end of its topics; 1 when it ran."""
    from bytewax.testing import run_main

    from dataflows.settings import get_settings
    from dataflows.store_writer import build

    settings = get_settings().model_copy(
        update={
            "kafka_bootstrap_servers": urls.kafka,
            "redis_url": SecretStr(urls.redis),
            "postgres_url": SecretStr(urls.postgres),
            "kafka_tail": False,
        }
    )
    run_main(build(settings))
    return 1


def register(app: typer.Typer) -> None:
    """Add the ``dlq`` group to ``app``."""
    app.add_typer(dlq_app, name="dlq")
