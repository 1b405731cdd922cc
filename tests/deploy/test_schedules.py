"""``alpha-panda schedule``: steps that exist run, steps this build lacks are named, never faked."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
import typer

from alpha_panda.cli import app
from alpha_panda.schedules import (
    Step,
    StepResult,
    end_of_day_steps,
    has_command,
    intraday_steps,
    run_steps,
    start_of_day_steps,
    summarise,
)
from connectors.marketdata.instruments import KITE_COLUMNS

ROOT = typer.main.get_command(app)
# `python -c CODE ARGS`: exits 3 when its first argument is "fail", else 0.
FAKE_STEP = (sys.executable, "-c", "import sys; sys.exit(3 if sys.argv[1] == 'fail' else 0)")


def _fake_root() -> object:
    fake = typer.Typer()
    fake.command("pass")(lambda: None)
    fake.command("fail")(lambda: None)
    group = typer.Typer()
    group.command("load")(lambda: None)
    fake.add_typer(group, name="things")
    return typer.main.get_command(fake)


def test_has_command_follows_groups_and_stops_at_a_command() -> None:
    assert has_command(ROOT, ["instruments", "load", "--file", "x.csv"])
    assert has_command(ROOT, ["backfill", "--source", "yahoo"])
    assert not has_command(ROOT, ["instruments"])  # a group, not a command
    assert not has_command(ROOT, ["instruments", "unload"])
    assert not has_command(ROOT, ["no-such-command"])
    fake = _fake_root()
    assert has_command(fake, ["things", "load"])
    assert not has_command(fake, ["things", "check"])


def test_every_step_runs_and_each_result_is_reported(capsys: pytest.CaptureFixture[str]) -> None:
    steps = [Step("first", ("pass",)), Step("second", ("fail",)), Step("third", ("things", "check"))]
    results = run_steps(_fake_root(), steps, FAKE_STEP)
    assert [(r.outcome, r.exit_code) for r in results] == [("ok", 0), ("failed", 3), ("not available", None)]
    assert summarise("test", results, strict=False) == 1
    out = capsys.readouterr().out
    assert "==> third: not available in this build (alpha-panda things check)" in out
    assert "schedule test: 1 of 3 steps ok; failed: second; not available in this build: third" in out


def test_missing_steps_fail_the_schedule_only_when_strict(capsys: pytest.CaptureFixture[str]) -> None:
    results = [
        StepResult(Step("a", ("pass",)), "ok", 0),
        StepResult(Step("b", ("kite", "check")), "not available"),
    ]
    assert summarise("s", results, strict=False) == 0
    assert summarise("s", results, strict=True) == 1
    assert "schedule s: 1 of 2 steps ok; not available in this build: b" in capsys.readouterr().out


def test_the_steps_of_each_schedule() -> None:
    assert [s.command for s in start_of_day_steps("/data/i.csv", "NSE")] == [
        "alpha-panda instruments load --file /data/i.csv --exchange NSE",
        "alpha-panda kite check",
        "alpha-panda reconcile",
    ]
    assert [s.command for s in start_of_day_steps(None, None)][0] == "alpha-panda instruments load"
    (backfill,) = intraday_steps("yahoo", "INFY.NS,TCS.NS", "1m", date(2024, 1, 2))
    assert backfill.command == (
        "alpha-panda backfill --source yahoo --symbols INFY.NS,TCS.NS --start 2024-01-02 --end 2024-01-03 "
        "--interval 1m --quiet"
    )
    assert has_command(ROOT, backfill.argv)
    assert [s.command for s in end_of_day_steps(date(2024, 1, 2))] == [
        "alpha-panda report --from ledger",
        "alpha-panda pnl close-day --date 2024-01-02",
    ]
    assert has_command(ROOT, end_of_day_steps(date(2024, 1, 2))[1].argv)  # alpha_panda/pnl_cli.py


@pytest.fixture
def database(postgres_url: str) -> Iterator[str]:
    name = f"sched_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(urlsplit(postgres_url)._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.integration
def test_start_of_day_by_hand_loads_instruments_on_real_postgres(database: str, tmp_path: Path) -> None:
    csv_file = tmp_path / "instruments.csv"
    csv_file.write_text(
        ",".join(KITE_COLUMNS) + "\n408065,1594,INFY,INFOSYS,1500.25,,0,0.05,1,EQ,NSE,NSE\n", encoding="utf-8"
    )
    env = {**os.environ, "POSTGRES_URL": database, "DATA_DIR": str(tmp_path / "no-stack")}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "alpha_panda.cli",
            "schedule",
            "start-of-day",
            "--instruments-file",
            str(csv_file),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert f"==> instruments load: alpha-panda instruments load --file {csv_file}" in done.stdout
    assert "1 instruments loaded" in done.stdout
    with psycopg.connect(database) as conn:
        assert conn.execute("SELECT instrument_token, tradingsymbol FROM instruments").fetchall() == [
            (408065, "INFY")
        ]
    # The other steps either ran or are named as missing from this build; nothing is silent.
    for purpose, argv in (("token check", ["kite", "check"]), ("reconcile", ["reconcile"])):
        if not has_command(ROOT, argv):
            assert f"==> {purpose}: not available in this build" in done.stdout
        else:
            assert f"==> {purpose}: alpha-panda {' '.join(argv)}" in done.stdout
