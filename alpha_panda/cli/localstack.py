"""The live pipeline on the local stack: ``up``, ``down``, ``status``, ``bootstrap``, ``seed``, ``demo``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from alpha_panda.cli.console import (
    DataDir,
    Mode,
    check_mode,
    console,
    err_console,
    external_urls,
    fail,
    local_stack,
    postgres_url_or_fail,
    urls_or_fail,
)
from schemas.errors import AlphaPandaError


def up(
    data_dir: DataDir = None,
    mode: Mode = "all-in-one",
    strategies: Annotated[
        Path | None, typer.Option(help="Seed these strategies (YAML).", exists=True)
    ] = None,
    workers: Annotated[int, typer.Option(min=1, help="Bytewax workers per dataflow.")] = 1,
) -> None:
    """Start servers (unless given by URL), create topics, migrate, seed, start dataflows."""
    from alpha_panda import orchestration
    from alpha_panda.strategy_file import read_strategy_rows
    from dataflows.settings import get_settings

    flows = orchestration.dataflows_for(check_mode(mode), get_settings())
    stack = local_stack(data_dir)
    try:
        with err_console.status("starting servers"):
            urls = stack.up(**external_urls())
        rows = read_strategy_rows(strategies) if strategies else []
        applied = orchestration.bootstrap(urls, get_settings(), rows)
        for name in flows:
            if stack.process(name) is None:
                orchestration.start_dataflow(stack, name, urls, workers=workers)
    except AlphaPandaError as err:
        raise fail(err) from err
    from connectors.errors import redact_url

    console.print(
        f"servers: kafka {urls.kafka}, redis {redact_url(urls.redis)}, "
        f"postgres {redact_url(urls.postgres)} (passwords in {stack.data_dir / 'secrets.json'})"
    )
    console.print(f"migrations applied: {applied or 'none new'}; strategies seeded: {len(rows)}")
    console.print(f"dataflows: {', '.join(flows)}; logs under {stack.logs_dir}")


def down(data_dir: DataDir = None) -> None:
    """Stop the dataflows and the servers that `up` started (external servers are left alone)."""
    from alpha_panda import orchestration

    stack = local_stack(data_dir)
    stopped = orchestration.stop_dataflows(stack) + stack.down()
    console.print(f"stopped: {', '.join(stopped) or 'nothing was running'}")


def status(data_dir: DataDir = None) -> None:
    """Show servers and dataflow processes, topic sizes and each dataflow's lag."""
    from alpha_panda import orchestration
    from dataflows.settings import get_settings

    stack = local_stack(data_dir)
    table = Table(title="Processes")
    for name in ("name", "pid", "alive", "url / log"):
        table.add_column(name)
    for row in stack.status():
        table.add_row(
            row.name,
            str(row.pid or "-"),
            "yes" if row.alive else "[red]no[/]",
            row.url or str(row.log_path or ""),
        )
    console.print(table)
    urls = stack.urls
    if urls is None:
        console.print("no stack recorded under", stack.data_dir)
        return
    try:
        sizes = orchestration.end_offsets(urls.kafka, orchestration.topics_for(get_settings().active_brokers))
    except Exception as err:  # status reports, never fails
        console.print(f"[red]Kafka not reachable at {urls.kafka}: {err}[/]")
        return
    topics = Table(title="Topics (messages)")
    topics.add_column("topic")
    topics.add_column("messages", justify="right")
    for topic, size in sorted(sizes.items()):
        if size:
            topics.add_row(topic, f"{size:,}")
    console.print(topics)
    lags = Table(title="Dataflow lag (end offset - last snapshot position)")
    lags.add_column("dataflow")
    lags.add_column("topic")
    lags.add_column("lag", justify="right")
    for name in orchestration.ALL_DATAFLOWS:
        if orchestration.recovery_dir(stack, name).exists():
            for topic, lag in sorted(orchestration.consumer_lag(stack, urls, name).items()):
                lags.add_row(name, topic, f"{lag:,}")
    console.print(lags)


def bootstrap_command(data_dir: DataDir = None) -> None:
    """Create every topic and apply the Postgres migrations (servers must be up)."""
    from alpha_panda import orchestration
    from dataflows.settings import get_settings

    urls = urls_or_fail(data_dir)
    applied = orchestration.bootstrap(urls, get_settings())
    console.print(f"topics ready; migrations applied: {applied or 'none new'}")


def seed(
    strategies: Annotated[Path, typer.Option(help="Strategies YAML file.", exists=True, dir_okay=False)],
    data_dir: DataDir = None,
) -> None:
    """Upsert strategy configurations into Postgres (running flows pick them up).

    Instruments may be tokens or ``EXCHANGE:SYMBOL`` names, resolved through
    the ``instruments`` table (``alpha-panda instruments load``).
    """
    from alpha_panda.strategy_file import read_strategy_rows
    from connectors.postgres import seed_strategies
    from operators.strategy import StrategyConfig

    try:
        url = postgres_url_or_fail(data_dir)
        rows = _resolve_instrument_names(url, read_strategy_rows(strategies))
        for row in rows:
            StrategyConfig.from_mapping(row)  # validate every row before writing any
        count = seed_strategies(url, rows)
    except AlphaPandaError as err:
        raise fail(err) from err
    console.print(f"seeded {count} strategies")


def _resolve_instrument_names(postgres_url: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Replace ``EXCHANGE:SYMBOL`` instruments by their tokens (rows of tokens pass unchanged)."""
    import psycopg

    from connectors.marketdata.instruments import InstrumentResolver, instrument_names, resolve_instruments
    from connectors.marketdata.store import lookup_instruments
    from connectors.postgres import apply_migrations

    names = instrument_names(rows)
    if not names:
        return rows
    apply_migrations(postgres_url)
    with psycopg.connect(postgres_url) as conn:
        resolver = InstrumentResolver(lookup_instruments(conn, names))
    return resolve_instruments(rows, resolver)


def demo(
    duration: Annotated[float, typer.Option(min=1, help="Seconds of simulated market.")] = 60,
    rate: Annotated[float, typer.Option(min=1, help="Ticks per second offered.")] = 2000,
    instruments: Annotated[int, typer.Option(min=1, help="Simulated instruments.")] = 20,
    mode: Mode = "all-in-one",
    data_dir: Annotated[Path, typer.Option(help="State directory of the demo (wiped first).")] = Path(
        ".alpha-panda/demo"
    ),
    keep: Annotated[bool, typer.Option(help="Leave the stack running afterwards.")] = False,
    dashboard: Annotated[
        bool, typer.Option(help="Serve the dashboard during the run and afterwards, until Ctrl-C.")
    ] = False,
) -> None:
    """Start the local stack, trade a simulated market live, and print the result."""
    from alpha_panda.demo import run_demo

    flows = check_mode(mode)
    try:
        result = run_demo(
            data_dir=data_dir,
            duration=duration,
            rate=rate,
            instruments=instruments,
            flows=flows,
            keep=keep,
            console=console,
            external=external_urls(),
            dashboard=dashboard,
        )
    except AlphaPandaError as err:
        raise fail(err) from err
    if not result:
        raise typer.Exit(code=1)


def register(app: typer.Typer) -> None:
    """Add ``up``, ``down``, ``status``, ``bootstrap``, ``seed`` and ``demo`` to ``app``."""
    app.command()(up)
    app.command()(down)
    app.command()(status)
    app.command(name="bootstrap")(bootstrap_command)
    app.command()(seed)
    app.command()(demo)
