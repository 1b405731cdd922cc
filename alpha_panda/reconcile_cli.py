"""``alpha-panda reconcile``: the command's options only; the work is in :mod:`alpha_panda.reconcile`.

Kept light so that ``alpha-panda`` starts without loading the Kafka, Redis
and Postgres clients.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from schemas.topics import BROKERS


def register(app: typer.Typer) -> None:
    """Add ``alpha-panda reconcile`` to ``app``."""
    app.command(name="reconcile")(reconcile_command)


def reconcile_command(
    repair_: Annotated[
        bool,
        typer.Option("--repair", help="Restore missing ledger rows and missing or stale Redis portfolios."),
    ] = False,
    strategy: Annotated[
        list[str] | None, typer.Option("--strategy", help="Only this strategy (repeatable).")
    ] = None,
    ticks_tail: Annotated[
        int, typer.Option(min=1, help="Messages per market.ticks partition read for the latest prices.")
    ] = 10_000,
    data_dir: Annotated[
        Path | None, typer.Option(help="State directory (default: DATA_DIR, .alpha-panda).")
    ] = None,
    broker: Annotated[
        str | None,
        typer.Option(help="One broker; 'zerodha' compares our positions with Kite's (see --adopt)."),
    ] = None,
    adopt: Annotated[bool, typer.Option(help="With --broker zerodha: take Kite's figures.")] = False,
) -> None:
    """Compare, per account, the ledger, the <broker>.orders.filled topics and the Redis portfolios.

    Prints every difference (exit 1 if any). With --repair, restores what can
    be restored, reconciles again and prints what is left (exit 0 when none).
    ``--broker zerodha`` compares our Zerodha positions with Kite's positions
    and holdings instead (``alpha-panda kite reconcile``).
    """
    from alpha_panda.cli.console import console, fail, urls_or_fail
    from alpha_panda.reconcile import _print, reconcile, repair
    from dataflows.settings import get_settings
    from operators.portfolio import PortfolioConfig
    from schemas.errors import AlphaPandaError

    if broker is not None and broker not in BROKERS:
        raise fail(ValueError(f"reconcile --broker {broker}: the brokers are {', '.join(BROKERS)}"))
    if broker == "zerodha":
        from alpha_panda.zerodha_cli import reconcile_zerodha

        raise typer.Exit(reconcile_zerodha(adopt, strategy[0] if strategy else None, data_dir))
    settings = get_settings()
    urls = urls_or_fail(data_dir)
    options = {
        "kafka": urls.kafka,
        "redis_url": urls.redis,
        "postgres_url": urls.postgres,
        "brokers": (broker,) if broker else settings.active_brokers,
        "config": PortfolioConfig(starting_cash=settings.starting_cash),
        "strategies": strategy,
        "ticks_tail": ticks_tail,
    }
    try:
        report = reconcile(**options)
        _print(console, report, "Differences")
        if not repair_:
            raise typer.Exit(code=1 if report.differences else 0)
        if report.differences:
            done = repair(report, redis_url=urls.redis, postgres_url=urls.postgres)
            console.print(
                f"repaired: {done.ledger_rows:,} ledger row(s), {done.portfolios:,} Redis portfolio(s)"
            )
            after = reconcile(**options)
            _print(console, after, "After repair")
            raise typer.Exit(code=1 if after.differences else 0)
    except AlphaPandaError as err:
        raise fail(err) from err
