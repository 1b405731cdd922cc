"""`replay --out DIR` refuses a DIR holding its input and removes only files a replay writes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from alpha_panda.cli import app
from alpha_panda.outdir import OutDirError, check_out_dir, clear_previous_outputs, is_replay_output
from tests.flows.conftest import MOMENTUM_ONLY, tick_line, write_lines


def test_replay_refuses_an_out_dir_that_holds_the_ticks(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    ticks = write_lines(out / "ticks.jsonl", [tick_line(256265, 100.0, s) for s in range(3)])
    strategies = tmp_path / "strategies.yaml"
    strategies.write_text(MOMENTUM_ONLY)
    result = CliRunner().invoke(
        app, ["replay", "--ticks", str(ticks), "--strategies", str(strategies), "--out", str(out), "--quiet"]
    )
    assert result.exit_code == 2
    assert "is inside the output directory" in " ".join(result.output.split())  # rich wraps lines
    assert ticks.exists()
    assert sorted(p.name for p in out.iterdir()) == ["ticks.jsonl"]


@pytest.mark.parametrize("inside", ["ticks.jsonl", "nested/deeper/ticks.parquet"])
def test_input_inside_the_out_dir_is_refused(tmp_path: Path, inside: str) -> None:
    ticks = tmp_path / "out" / inside
    ticks.parent.mkdir(parents=True)
    ticks.write_text("")
    with pytest.raises(OutDirError, match=r"replay: the tick file .* is inside the output directory"):
        check_out_dir(ticks, tmp_path / "out")
    with pytest.raises(OutDirError, match="is inside the output directory"):
        check_out_dir(ticks, tmp_path)  # an ancestor counts too


def test_a_symlinked_input_is_judged_by_where_it_points(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    real = out / "ticks.jsonl"
    real.write_text("")
    link = tmp_path / "link.jsonl"
    link.symlink_to(real)
    with pytest.raises(OutDirError):
        check_out_dir(link, out)
    check_out_dir(tmp_path / "elsewhere.jsonl", out)  # outside: fine
    check_out_dir(tmp_path / "t.jsonl", tmp_path / "not-yet")  # DIR need not exist


def test_an_out_path_that_is_a_file_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.write_text("")
    with pytest.raises(OutDirError, match="exists and is not a directory"):
        check_out_dir(tmp_path / "ticks.jsonl", out)


def test_only_replay_outputs_are_removed(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    ours = [
        "paper.signals.raw.jsonl",
        "zerodha.orders.filled.jsonl",
        "market.ticks.dlq.jsonl",
        "paper.pnl.snapshots.worker1.jsonl",
        "portfolio.json",
    ]
    theirs = [
        "ticks.jsonl",
        "market.ticks.jsonl",  # the input topic: replay never writes it
        "notes.jsonl",
        "paper.signals.raw.jsonl.bak",
        "portfolio.json.old",
        "kraken.orders.filled.jsonl",
    ]
    for name in ours + theirs:
        (out / name).write_text("x")
    (out / "paper.orders.failed.jsonl").mkdir()  # a directory with an output's name
    elsewhere = tmp_path / "keep.jsonl"
    elsewhere.write_text("x")
    os.symlink(elsewhere, out / "paper.signals.validated.jsonl")  # a link with an output's name

    removed = clear_previous_outputs(out)

    assert sorted(p.name for p in removed) == sorted(ours)
    left = sorted(p.name for p in out.iterdir())
    assert left == sorted([*theirs, "paper.orders.failed.jsonl", "paper.signals.validated.jsonl"])
    assert elsewhere.read_text() == "x"
    assert clear_previous_outputs(tmp_path / "missing") == []


def test_output_names() -> None:
    assert is_replay_output("paper.signals.rejected.jsonl")
    assert is_replay_output("zerodha.pnl.snapshots.dlq.worker12.jsonl")
    assert not is_replay_output("paper.signals.rejected.jsonl.tmp")
    assert not is_replay_output("market.ticks.jsonl")
