"""``alpha-panda sweep`` and ``alpha-panda walkforward``: grids of parameters over a tick file."""

from __future__ import annotations

import dataclasses
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

from schemas.errors import AlphaPandaError


def _instruments(text: str | None) -> tuple[int, ...] | None:
    if not text:
        return None
    try:
        tokens = tuple(int(part) for part in text.replace(" ", "").split(",") if part)
    except ValueError as err:
        msg = f"--instruments must be comma-separated instrument tokens, got {text!r}"
        raise typer.BadParameter(msg) from err
    return tokens


def _number(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def _params() -> Any:
    from dataflows.pipeline import PipelineParams
    from dataflows.settings import get_settings

    # Sweeps trade paper only and never place live orders.
    return dataclasses.replace(
        PipelineParams.from_settings(get_settings()), brokers=("paper",), zerodha_mode="dry_run"
    )


def register(app: typer.Typer) -> None:  # two commands with their options
    """Add ``sweep`` and ``walkforward`` to ``app``."""
    from alpha_panda.cli.console import console, err_console, fail

    def progress_bar(label: str, quiet: bool) -> Progress:
        columns = (
            TextColumn(label),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
        )
        return Progress(*columns, console=err_console, disable=quiet, transient=True)

    @app.command()
    def sweep(  # the command's options
        ticks: Annotated[Path, typer.Option(help="Tick file (JSONL or CSV).", exists=True, dir_okay=False)],
        strategy: Annotated[
            str, typer.Option(help="strategy_type: a built-in, an entry point or module:Class.")
        ],
        grid: Annotated[
            Path,
            typer.Option(
                help="Grid YAML: parameter -> list, value or {from, to, step}.", exists=True, dir_okay=False
            ),
        ],
        out: Annotated[Path, typer.Option(help="Output directory (sweep.csv, sweep.json, replay/).")] = Path(
            "out/sweep"
        ),
        rank_by: Annotated[str, typer.Option(help="total_pnl, sharpe or max_drawdown.")] = "total_pnl",
        instruments: Annotated[
            str | None, typer.Option(help="Comma-separated tokens (default: every one in the file).")
        ] = None,
        top: Annotated[int, typer.Option(min=1, help="Rows of the ranked table to print.")] = 20,
        quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
    ) -> None:
        """Run every combination of a grid, each as its own paper account, in one pass over the file."""
        from alpha_panda.sweep import check_strategy_type, load_grid, run_sweep

        try:
            check_strategy_type(strategy)
            values = load_grid(grid)
            with progress_bar("sweeping", quiet) as progress:
                task = progress.add_task("sweep", total=ticks.stat().st_size)
                result = run_sweep(
                    ticks,
                    strategy,
                    values,
                    out,
                    _params(),
                    rank_by=rank_by,
                    instruments=_instruments(instruments),
                    on_progress=lambda n: progress.advance(task, n),
                )
        except AlphaPandaError as err:
            raise fail(err) from err
        count = len(result.rows)
        table = Table(
            title=f"Sweep of {strategy}: {count} combinations, {result.ticks:,} ticks, by {rank_by}"
        )
        for name in (
            "rank",
            "id",
            "parameters",
            "total P&L",
            "return",
            "Sharpe",
            "max DD",
            "trades",
            "win rate",
            "fees",
        ):
            table.add_column(name, justify="left" if name in ("id", "parameters") else "right")
        for row in result.rows[:top]:
            table.add_row(
                str(row["rank"]),
                row["id"],
                ", ".join(f"{k}={v}" for k, v in row["parameters"].items()),
                _number(row["total_pnl"], 2),
                _number(row["total_return"]),
                _number(row["sharpe"], 2),
                _number(row["max_drawdown"]),
                str(row["trades"]),
                _number(row["win_rate"], 2),
                _number(row["fees_paid"], 2),
            )
        console.print(table)
        console.print(f"every combination: {out / 'sweep.csv'}, {out / 'sweep.json'}")

    @app.command()
    def walkforward(  # the command's options
        ticks: Annotated[Path, typer.Option(help="Tick file (JSONL or CSV).", exists=True, dir_okay=False)],
        strategy: Annotated[
            str, typer.Option(help="strategy_type: a built-in, an entry point or module:Class.")
        ],
        grid: Annotated[Path, typer.Option(help="Grid YAML (as for sweep).", exists=True, dir_okay=False)],
        train: Annotated[str, typer.Option(help="Train window of event time: 30s, 5m, 1h, 5d.")],
        test: Annotated[str, typer.Option(help="Test window of event time, right after each train window.")],
        anchored: Annotated[
            bool, typer.Option(help="Train windows all start at the first tick (growing).")
        ] = False,
        out: Annotated[Path, typer.Option(help="Output directory (walkforward.json, folds/).")] = Path(
            "out/walkforward"
        ),
        rank_by: Annotated[str, typer.Option(help="total_pnl, sharpe or max_drawdown.")] = "total_pnl",
        instruments: Annotated[
            str | None, typer.Option(help="Comma-separated tokens (default: every one in the file).")
        ] = None,
        quiet: Annotated[bool, typer.Option(help="No progress output.")] = False,
    ) -> None:
        """Pick the best combination on each train window; trade it out of sample on the next test window."""
        from alpha_panda.report import parse_interval
        from alpha_panda.sweep import check_strategy_type, load_grid
        from alpha_panda.walkforward import run_walkforward

        try:
            check_strategy_type(strategy)
            values = load_grid(grid)
            result = run_walkforward(
                ticks,
                strategy,
                values,
                out,
                _params(),
                train=parse_interval(train),
                test=parse_interval(test),
                anchored=anchored,
                rank_by=rank_by,
                instruments=_instruments(instruments),
                on_fold=None
                if quiet
                else lambda fold: err_console.print(
                    f"fold {fold['fold']}: train {fold['train']['start']} .. {fold['train']['end']}, "
                    f"chose {fold['chosen']['id']}"
                ),
            )
        except AlphaPandaError as err:
            raise fail(err) from err
        table = Table(
            title=(
                f"Walk-forward of {strategy} ({'anchored' if anchored else 'rolling'}, "
                f"train {train}, test {test}, by {rank_by})"
            )
        )
        for name in (
            "fold",
            "test window",
            "chosen",
            "parameters",
            "IS P&L",
            "OOS P&L",
            f"IS {rank_by}",
            f"OOS {rank_by}",
        ):
            table.add_column(
                name, justify="left" if name in ("test window", "chosen", "parameters") else "right"
            )
        for fold in result["folds"]:
            table.add_row(
                str(fold["fold"]),
                f"{fold['test']['start']} .. {fold['test']['end']}",
                fold["chosen"]["id"],
                ", ".join(f"{k}={v}" for k, v in fold["chosen"]["parameters"].items()),
                _number(fold["in_sample"]["total_pnl"], 2),
                _number(fold["out_of_sample"]["total_pnl"], 2),
                _number(fold["in_sample"][rank_by]),
                _number(fold["out_of_sample"][rank_by]),
            )
        console.print(table)
        summary = result["summary"]
        console.print(
            f"in-sample P&L per day {_number(summary['in_sample_pnl_per_day'], 2)}, out-of-sample "
            f"{_number(summary['out_of_sample_pnl_per_day'], 2)} "
            f"(efficiency {_number(summary['efficiency'])}); "
            f"stitched out-of-sample P&L {_number(summary['out_of_sample_total_pnl'], 2)}"
        )
        console.print(f"folds and stitched equity: {out / 'walkforward.json'}")
