"""``alpha-panda schedule start-of-day | intraday | end-of-day``: the daily jobs, runnable by hand.

Each schedule is a list of steps, and each step is an ``alpha-panda``
command line, run as its own process so its output, exit code and settings
are exactly those of running it by hand. A step whose command this build does
not have (yet) is reported as not available, never skipped silently; every
step runs even if an earlier one failed, and the summary names each result.
The Kubernetes CronJobs (``deploy/k8s/base/schedules.yaml``) run these.

Exit code: 1 if a step failed (or, with ``--strict``, was not available), else 0.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

import typer
from rich.console import Console
from rich.table import Table

console = Console(width=None if Console().is_terminal else 120)

Outcome = Literal["ok", "failed", "not available"]


@dataclass(frozen=True)
class Step:
    """One step of a schedule: what it is for, and the ``alpha-panda`` arguments that do it."""

    purpose: str
    argv: tuple[str, ...]

    @property
    def command(self) -> str:
        """The step as typed by hand."""
        return " ".join(("alpha-panda", *self.argv))


@dataclass(frozen=True)
class StepResult:
    """What running a step came to: ``ok``, ``failed`` (with its exit code) or ``not available``."""

    step: Step
    outcome: Outcome
    exit_code: int | None = None


def start_of_day_steps(instruments_file: str | None, exchange: str | None) -> list[Step]:
    """Instrument master, Kite access-token check, reconciliation of the ledger with the broker."""
    load = ["instruments", "load"]
    if instruments_file:
        load += ["--file", instruments_file]
    if exchange:
        load += ["--exchange", exchange]
    return [
        Step("instruments load", tuple(load)),
        Step("token check", ("kite", "check")),
        Step("reconcile", ("reconcile",)),
    ]


def intraday_steps(source: str, symbols: str, interval: str, day: date) -> list[Step]:
    """The day's bars so far (``day`` to the next day, as ``backfill`` reads dates); upserts."""
    return [
        Step(
            "backfill",
            (
                "backfill",
                "--source",
                source,
                "--symbols",
                symbols,
                "--start",
                day.isoformat(),
                "--end",
                (day + timedelta(days=1)).isoformat(),
                "--interval",
                interval,
                "--quiet",
            ),
        )
    ]


def end_of_day_steps(day: date) -> list[Step]:
    """The day's report from the ledger, and the day's P&L per account into Postgres."""
    return [
        Step("report", ("report", "--from", "ledger")),
        Step("day's P&L into Postgres", ("pnl", "close-day", "--date", day.isoformat())),
    ]


def has_command(root: Any, argv: Sequence[str]) -> bool:
    """Whether ``argv`` names a command of the command tree ``root`` (sub-groups followed).

    ``root`` is the app's Click command (``typer.main.get_command``); a group
    is anything with a ``commands`` mapping, as Click's and Typer's are.
    """
    command = root
    for word in argv:
        children = getattr(command, "commands", None)
        if children is None:
            return True  # a command reached: the rest are its arguments
        if word not in children:
            return False
        command = children[word]
    return getattr(command, "commands", None) is None


def run_steps(root: Any, steps: Sequence[Step], executable: Sequence[str]) -> list[StepResult]:
    """Run every available step as ``executable + argv``, in order; report each."""
    results: list[StepResult] = []
    for step in steps:
        if not has_command(root, step.argv):
            console.print(
                f"[yellow]==> {step.purpose}: not available in this build[/] ({step.command})", soft_wrap=True
            )
            results.append(StepResult(step, "not available"))
            continue
        console.print(f"[bold]==> {step.purpose}:[/] {step.command}", soft_wrap=True)
        console.file.flush()  # before the step's own output, which goes straight to the same stdout
        code = subprocess.run([*executable, *step.argv], check=False).returncode
        results.append(StepResult(step, "ok" if code == 0 else "failed", code))
    return results


def summarise(name: str, results: Sequence[StepResult], *, strict: bool) -> int:
    """Print the table of results; return the exit code."""
    table = Table(title=f"schedule {name}")
    for column in ("step", "command", "result"):
        table.add_column(column)
    colours = {"ok": "green", "failed": "red", "not available": "yellow"}
    for r in results:
        text = r.outcome if r.exit_code in (None, 0) else f"{r.outcome} (exit {r.exit_code})"
        table.add_row(r.step.purpose, r.step.command, f"[{colours[r.outcome]}]{text}[/]")
    console.print(table)
    failed = [r.step.purpose for r in results if r.outcome == "failed"]
    missing = [r.step.purpose for r in results if r.outcome == "not available"]
    ran = len(results) - len(missing)
    console.print(
        f"schedule {name}: {ran - len(failed)} of {len(results)} steps ok"
        + (f"; failed: {', '.join(failed)}" if failed else "")
        + (f"; not available in this build: {', '.join(missing)}" if missing else ""),
        soft_wrap=True,
    )
    return 1 if failed or (strict and missing) else 0


Strict = Annotated[bool, typer.Option(help="Exit 1 when a step is not available in this build.")]
Timezone = Annotated[
    str, typer.Option(envvar="SCHEDULE_TIMEZONE", help="Market time zone that decides 'today'.")
]
Day = Annotated[str | None, typer.Option("--date", help="The trading day, YYYY-MM-DD (default: today).")]


def _today(timezone: str, given: str | None) -> date:
    if given:
        return date.fromisoformat(given)
    return datetime.now(ZoneInfo(timezone)).date()


def register(app: typer.Typer) -> None:
    """Add the ``schedule`` group to the ``alpha-panda`` app."""
    schedule_app = typer.Typer(no_args_is_help=True, help="The daily jobs (Kubernetes CronJobs), by hand.")
    app.add_typer(schedule_app, name="schedule")
    # Steps run as `alpha-panda ...` (the console script beside this interpreter), so their
    # messages name the command as typed by hand.
    script = Path(sys.executable).with_name("alpha-panda")
    executable = (str(script),) if script.exists() else (sys.executable, "-m", "alpha_panda.cli")

    def finish(name: str, steps: list[Step], strict: bool) -> None:
        code = summarise(name, run_steps(typer.main.get_command(app), steps, executable), strict=strict)
        if code:
            raise typer.Exit(code=code)

    @schedule_app.command("start-of-day")
    def start_of_day(
        instruments_file: Annotated[
            str | None,
            typer.Option(envvar="INSTRUMENTS_FILE", help="Kite instruments CSV instead of downloading."),
        ] = None,
        exchange: Annotated[
            str | None, typer.Option(envvar="INSTRUMENTS_EXCHANGE", help="Only this exchange's instruments.")
        ] = None,
        strict: Strict = False,
    ) -> None:
        """Instruments load, token check, reconcile."""
        finish("start-of-day", start_of_day_steps(instruments_file, exchange), strict)

    @schedule_app.command("intraday")
    def intraday(
        symbols: Annotated[str, typer.Option(envvar="BACKFILL_SYMBOLS", help="Comma-separated symbols.")],
        source: Annotated[str, typer.Option(envvar="BACKFILL_SOURCE", help="alpaca or yahoo.")] = "yahoo",
        interval: Annotated[str, typer.Option(envvar="BACKFILL_INTERVAL", help="Bar size.")] = "1m",
        timezone: Timezone = "Asia/Kolkata",
        day: Day = None,
        strict: Strict = False,
    ) -> None:
        """Backfill the day's bars so far (run hourly; upserts, so reruns are harmless)."""
        finish("intraday", intraday_steps(source, symbols, interval, _today(timezone, day)), strict)

    @schedule_app.command("end-of-day")
    def end_of_day(timezone: Timezone = "Asia/Kolkata", day: Day = None, strict: Strict = False) -> None:
        """The day's report, and the day's P&L into Postgres."""
        finish("end-of-day", end_of_day_steps(_today(timezone, day)), strict)
