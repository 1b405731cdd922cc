"""The ``alpha-panda`` command line."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import SecretStr
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from schemas.errors import AlphaPandaError

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="Alpha Panda: a streaming trading pipeline."
)
# Tables stay readable when piped or captured (no terminal to measure).
console = Console(width=None if Console().is_terminal else 120)
err_console = Console(stderr=True)


@app.callback()
def _configure() -> None:
    """Alpha Panda: a streaming trading pipeline."""
    from connectors.kafka import use_client_security
    from dataflows.settings import get_settings

    try:
        use_client_security(get_settings().kafka_security())
    except ValueError as err:  # pydantic's ValidationError: a setting in the environment is invalid
        raise _fail(err) from None


def _fail(err: Exception) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {err}")
    return typer.Exit(code=2)


def print_replay_summary(summary: object, out_dir: Path | None = None) -> None:
    """Print a replay summary as two tables."""
    from alpha_panda.replay import ReplaySummary

    assert isinstance(summary, ReplaySummary)  # noqa: S101 - narrowing for type checkers
    head = Table(title="Replay", show_header=False)
    head.add_row("tick lines", f"{summary.lines:,}")
    head.add_row("ticks decoded", f"{summary.ticks:,}")
    head.add_row("dead letters (market.ticks.dlq)", f"{summary.dead_letters:,}")
    if out_dir is not None:
        head.add_row("output", str(out_dir))
    console.print(head)
    table = Table(title="Per broker and strategy")
    for name in ("broker", "strategy", "signals", "validated", "rejected", "fills"):
        table.add_column(name, justify="left" if name in ("broker", "strategy") else "right", no_wrap=True)
    for name in ("realized P&L", "unrealized P&L", "fees", "total P&L"):
        table.add_column(name, justify="right")
    for (broker, strategy_id), acc in sorted(summary.accounts.items()):
        colour = "green" if acc.total_pnl >= 0 else "red"
        table.add_row(
            broker,
            strategy_id,
            str(acc.signals),
            str(acc.validated),
            str(acc.rejected),
            str(acc.fills),
            f"{acc.realized_pnl:,.2f}",
            f"{acc.unrealized_pnl:,.2f}",
            f"{acc.fees_paid:,.2f}",
            f"[{colour}]{acc.total_pnl:,.2f}[/]",
        )
    console.print(table)
    if summary.topic_counts:
        topics = Table(title="Messages per topic")
        topics.add_column("topic")
        topics.add_column("messages", justify="right")
        for topic, count in summary.topic_counts.items():
            topics.add_row(topic, f"{count:,}")
        console.print(topics)


@app.command()
def replay(
    ticks: Annotated[
        Path,
        typer.Option(
            help="Tick file: JSONL (producer-form market_tick), CSV or Parquet.", exists=True, dir_okay=False
        ),
    ],
    strategies: Annotated[Path, typer.Option(help="Strategies YAML file.", exists=True, dir_okay=False)],
    out: Annotated[Path, typer.Option(help="Output directory for <topic>.jsonl and portfolio.json.")] = Path(
        "out"
    ),
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
    report: Annotated[bool, typer.Option(help="Then write DIR/report.html and DIR/report.json.")] = False,
) -> None:
    """Run the whole pipeline over a tick file in one process, with no servers."""
    from alpha_panda.outdir import check_out_dir
    from alpha_panda.replay import run_replay
    from alpha_panda.strategy_file import load_strategy_file
    from connectors.parquet_ticks import is_parquet, parquet_row_count
    from dataflows.pipeline import PipelineParams
    from dataflows.settings import get_settings

    try:
        check_out_dir(ticks, out)
        if is_parquet(ticks):
            parquet_row_count(ticks)  # a file without the tick columns fails here, by name
        configs = load_strategy_file(strategies)
        # A replay never places live orders, whatever ZERODHA_LIVE_TRADING says.
        params = dataclasses.replace(PipelineParams.from_settings(get_settings()), zerodha_mode="dry_run")
        columns = (
            TextColumn("replaying"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=err_console, disable=quiet, transient=True) as progress:
            task = progress.add_task("replay", total=ticks.stat().st_size)
            summary = run_replay(ticks, configs, out, params, on_progress=lambda n: progress.advance(task, n))
    except AlphaPandaError as err:
        raise _fail(err) from err
    print_replay_summary(summary, out)
    if report:
        from alpha_panda.report import write_report

        try:
            console.print(f"report: {write_report(out)}")
        except AlphaPandaError as err:
            raise _fail(err) from err


@app.command()
def simulate(
    out: Annotated[Path, typer.Option(help="Tick file to write (JSONL).")] = Path("ticks.jsonl"),
    instruments: Annotated[int, typer.Option(min=1, help="Number of instruments.")] = 10,
    ticks: Annotated[int, typer.Option(min=1, help="Ticks per instrument.")] = 1000,
    seed: Annotated[int, typer.Option(help="Random seed; same seed, same file.")] = 7,
    interval_ms: Annotated[
        int, typer.Option(min=1, help="Event time between ticks of one instrument.")
    ] = 250,
) -> None:
    """Write a deterministic synthetic tick file (trending and mean-reverting regimes)."""
    from datetime import timedelta

    from connectors.simulator import MarketSpec, simulate_lines

    spec = MarketSpec(
        instruments=instruments,
        ticks_per_instrument=ticks,
        seed=seed,
        interval=timedelta(milliseconds=interval_ms),
    )
    total = instruments * ticks
    with out.open("wb") as handle, Progress(console=err_console, transient=True) as progress:
        task = progress.add_task("simulating", total=total)
        for n, line in enumerate(simulate_lines(spec), start=1):
            handle.write(line)
            if n % 10_000 == 0:
                progress.update(task, completed=n)
    console.print(
        f"wrote {total:,} ticks for {instruments} instruments to {out} (tokens {spec.tokens()[0]}..)"
    )


# --- the live pipeline on the local stack -------------------------------------------

DataDir = Annotated[Path | None, typer.Option(help="State directory (default: DATA_DIR, .alpha-panda).")]
Mode = Annotated[str, typer.Option(help="all-in-one (one `pipeline` flow) or per-stage (four flows).")]


def _stack(data_dir: Path | None) -> Any:
    from alpha_panda.stack import LocalStack
    from dataflows.settings import get_settings

    return LocalStack(data_dir or get_settings().data_dir)


def _external_urls() -> dict[str, str | None]:
    from dataflows.settings import get_settings

    settings = get_settings()
    return {
        "kafka_url": settings.kafka_bootstrap_servers or None,
        "redis_url": settings.redis_url.get_secret_value() or None,
        "postgres_url": settings.postgres_url.get_secret_value() or None,
    }


def _check_mode(mode: str) -> tuple[str, ...]:
    from alpha_panda.orchestration import DATAFLOW_SETS

    if mode not in DATAFLOW_SETS:
        raise _fail(ValueError(f"--mode must be one of {sorted(DATAFLOW_SETS)}, got {mode!r}"))
    return DATAFLOW_SETS[mode]


@app.command()
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

    flows = _check_mode(mode)
    stack = _stack(data_dir)
    try:
        with err_console.status("starting servers"):
            urls = stack.up(**_external_urls())
        rows = read_strategy_rows(strategies) if strategies else []
        applied = orchestration.bootstrap(urls, get_settings(), rows)
        for name in flows:
            if stack.process(name) is None:
                orchestration.start_dataflow(stack, name, urls, workers=workers)
    except AlphaPandaError as err:
        raise _fail(err) from err
    from connectors.errors import redact_url

    console.print(
        f"servers: kafka {urls.kafka}, redis {redact_url(urls.redis)}, "
        f"postgres {redact_url(urls.postgres)} (passwords in {stack.data_dir / 'secrets.json'})"
    )
    console.print(f"migrations applied: {applied or 'none new'}; strategies seeded: {len(rows)}")
    console.print(f"dataflows: {', '.join(flows)}; logs under {stack.logs_dir}")


@app.command()
def down(data_dir: DataDir = None) -> None:
    """Stop the dataflows and the servers that `up` started (external servers are left alone)."""
    from alpha_panda import orchestration

    stack = _stack(data_dir)
    stopped = orchestration.stop_dataflows(stack) + stack.down()
    console.print(f"stopped: {', '.join(stopped) or 'nothing was running'}")


@app.command()
def status(data_dir: DataDir = None) -> None:
    """Show servers and dataflow processes, topic sizes and each dataflow's lag."""
    from alpha_panda import orchestration
    from dataflows.settings import get_settings

    stack = _stack(data_dir)
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
    except Exception as err:  # noqa: BLE001 - status reports, never fails
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


@app.command(name="bootstrap")
def bootstrap_command(data_dir: DataDir = None) -> None:
    """Create every topic and apply the Postgres migrations (servers must be up)."""
    from alpha_panda import orchestration
    from dataflows.settings import get_settings

    urls = _urls_or_fail(data_dir)
    applied = orchestration.bootstrap(urls, get_settings())
    console.print(f"topics ready; migrations applied: {applied or 'none new'}")


@app.command()
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
        url = _postgres_url_or_fail(data_dir)
        rows = _resolve_instrument_names(url, read_strategy_rows(strategies))
        for row in rows:
            StrategyConfig.from_mapping(row)  # validate every row before writing any
        count = seed_strategies(url, rows)
    except AlphaPandaError as err:
        raise _fail(err) from err
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


def _postgres_url_or_fail(data_dir: Path | None) -> str:
    given = _external_urls()["postgres_url"]
    recorded = _stack(data_dir).urls
    url = given or (recorded.postgres if recorded else None)
    if not url:
        raise _fail(ValueError("no PostgreSQL: set POSTGRES_URL or run `alpha-panda up`"))
    return url


def _urls_or_fail(data_dir: Path | None) -> Any:
    from alpha_panda.stack import StackUrls

    given = _external_urls()
    recorded = _stack(data_dir).urls
    kafka = given["kafka_url"] or (recorded.kafka if recorded else None)
    redis = given["redis_url"] or (recorded.redis if recorded else None)
    postgres = given["postgres_url"] or (recorded.postgres if recorded else None)
    if not (kafka and redis and postgres):
        raise _fail(
            ValueError(
                "no servers: set KAFKA_BOOTSTRAP_SERVERS, REDIS_URL, POSTGRES_URL or run `alpha-panda up`"
            )
        )
    return StackUrls(kafka, redis, postgres)


@app.command()
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

    flows = _check_mode(mode)
    try:
        result = run_demo(
            data_dir=data_dir,
            duration=duration,
            rate=rate,
            instruments=instruments,
            flows=flows,
            keep=keep,
            console=console,
            external=_external_urls(),
            dashboard=dashboard,
        )
    except AlphaPandaError as err:
        raise _fail(err) from err
    if not result:
        raise typer.Exit(code=1)


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option(help="Interface to bind (default DASHBOARD_HOST, 127.0.0.1).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(min=0, max=65535, help="Port (default DASHBOARD_PORT, 8765; 0 picks one).")
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Serve the read API, /metrics and the live dashboard; alerts go to ALERT_WEBHOOK_URLS."""
    import time

    from alpha_panda.dashboard.server import start_dashboard
    from dataflows.settings import get_settings

    settings = get_settings()
    updates = {k: v for k, v in (("dashboard_host", host), ("dashboard_port", port)) if v is not None}
    settings = settings.model_copy(update=updates)
    if not settings.dashboard_token.get_secret_value():
        raise _fail(ValueError("DASHBOARD_TOKEN is not set: the dashboard refuses to run without a token"))
    urls = _urls_or_fail(data_dir)
    try:
        running = start_dashboard(settings, urls, _stack(data_dir))
    except AlphaPandaError as err:
        raise _fail(err) from err
    alerts = "on" if running.watcher is not None else "off (no ALERT_WEBHOOK_URLS)"
    console.print(f"dashboard and API at [bold]{running.url}[/] (token: DASHBOARD_TOKEN); alerts {alerts}")
    try:
        while running.thread.is_alive():
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        running.stop()


# --- dead letters --------------------------------------------------------------------

dlq_app = typer.Typer(no_args_is_help=True, help="Inspect and replay dead-letter topics (<topic>.dlq).")
app.add_typer(dlq_app, name="dlq")
DlqTopic = Annotated[str, typer.Option("--topic", help="A dead-letter topic, e.g. paper.orders.filled.dlq.")]


@dlq_app.command(name="list")
def dlq_list(topic: DlqTopic, data_dir: DataDir = None) -> None:
    """Summarise a DLQ: records by original topic and error type, and whether they replay."""
    from alpha_panda.dlq import list_dlq

    try:
        summary = list_dlq(_urls_or_fail(data_dir).kafka, topic)
    except AlphaPandaError as err:
        raise _fail(err) from err
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
        raise _fail(ValueError(f"--since must be an ISO-8601 time, got {since!r}")) from err
    urls = _urls_or_fail(data_dir)
    try:
        result = replay_dlq(urls.kafka, topic, dry_run=dry_run, limit=limit, since=since_at)
        stored = 0
        if apply and not dry_run and result.total_republished:
            stored = _apply_replayed(urls)
    except AlphaPandaError as err:
        raise _fail(err) from err
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


from alpha_panda.bench.command import bench_command  # noqa: E402 - registered after the commands above

app.command(name="bench")(bench_command)

from alpha_panda.marketdata_cli import register  # noqa: E402 - backfill, feed, instruments

register(app)

from alpha_panda.reconcile_cli import register as register_reconcile  # noqa: E402 - reconcile

register_reconcile(app)

from alpha_panda.report_cli import register as register_report  # noqa: E402 - report

register_report(app)

from alpha_panda.sweep_cli import register as register_sweep  # noqa: E402 - sweep, walkforward

register_sweep(app)

from alpha_panda.zerodha_cli import register as register_zerodha  # noqa: E402 - halt, resume, kite, reconcile

register_zerodha(app)

from alpha_panda.schedules import register as register_schedules  # noqa: E402 - schedule start-of-day|...

register_schedules(app)

from alpha_panda.pnl_cli import register as register_pnl  # noqa: E402 - pnl close-day

register_pnl(app)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
