"""``alpha-panda replay`` and ``simulate``: the pipeline over a tick file, and synthetic tick files."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from alpha_panda.cli.console import console, err_console, fail
from schemas.errors import AlphaPandaError


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
    processes: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=2,
            help=(
                "1, or 2: the accounts (risk, execution, books, the files) on a second process, the same "
                "outputs in less time. Default: 2 for a file of 8 MiB or more on a machine with two cores."
            ),
        ),
    ] = None,
) -> None:
    """Run the whole pipeline over a tick file, with no servers (on one process, or two for big files)."""
    from alpha_panda.outdir import check_out_dir
    from alpha_panda.replay import auto_processes, run_replay
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
        if processes is None:
            processes = auto_processes(ticks, params)
        # Drawn from the progress callback, never from a thread of its own: a two-process
        # replay forks, and a fork wants no other thread alive.
        with Progress(
            *columns, console=err_console, disable=quiet, transient=True, auto_refresh=False
        ) as progress:
            task = progress.add_task("replay", total=ticks.stat().st_size)
            summary = run_replay(
                ticks, configs, out, params, on_progress=_drawn(progress, task), processes=processes
            )
    except AlphaPandaError as err:
        raise fail(err) from err
    print_replay_summary(summary, out)
    if report:
        from alpha_panda.report import write_report

        try:
            console.print(f"report: {write_report(out)}")
        except AlphaPandaError as err:
            raise fail(err) from err


PROGRESS_REDRAW_S = 0.1
"""Seconds between two redraws of the replay's progress bar."""


def _drawn(progress: Progress, task: Any) -> Callable[[int], None]:
    """A progress callback that advances ``task`` and redraws at most every :data:`PROGRESS_REDRAW_S`."""
    drawn_at = 0.0

    def advance(consumed: int) -> None:
        nonlocal drawn_at
        progress.advance(task, consumed)
        now = time.monotonic()
        if now - drawn_at >= PROGRESS_REDRAW_S:
            drawn_at = now
            progress.refresh()

    return advance


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


def register(app: typer.Typer) -> None:
    """Add ``replay`` and ``simulate`` to ``app``."""
    app.command()(replay)
    app.command()(simulate)
