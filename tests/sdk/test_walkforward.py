"""Walk-forward folds on a hand-checked tape: windows, choices, in- and out-of-sample P&L."""

from __future__ import annotations

import json
from datetime import UTC, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from alpha_panda.cli import app
from alpha_panda.walkforward import run_walkforward, windows
from dataflows.pipeline import PipelineParams
from tests.flows.conftest import START, tick_line, write_lines

TOKEN = 256265
UTC_START = START.astimezone(UTC)  # windows are reported in UTC, as every time is normalised
# One tick a minute. Momentum over 2 prices: a +2 % move is a BUY, -2 % a SELL.
PRICES = [
    100.0,
    100.0,
    102.0,
    104.0,
    104.0,
    104.0,
    104.0,
    104.0,
    104.0,
    104.0,  # minutes 0-9
    104.0,
    106.08,
    106.08,
    103.9584,
    103.9584,  # 10-14
    103.9584,
    106.037568,
    106.037568,
    106.037568,
    106.037568,  # 15-19
]
GRID = {"lookback_period": [2], "momentum_threshold": [0.01, 0.5], "position_size": [10]}
# momentum-000 (1 %) trades every 2 % move; momentum-001 (50 %) never trades.


def buy(price: str) -> tuple[Decimal, Decimal]:
    """Cash out and fees of a paper BUY of 10 (5 bps slippage, 10 bps commission)."""
    notional = Decimal(price) * Decimal("1.0005") * 10
    return notional, notional * Decimal("0.001")


def sell(price: str) -> tuple[Decimal, Decimal]:
    notional = Decimal(price) * Decimal("0.9995") * 10
    return notional, notional * Decimal("0.001")


@pytest.fixture
def tape(tmp_path: Path) -> Path:
    return write_lines(tmp_path / "ticks.jsonl", [tick_line(TOKEN, p, 60 * m) for m, p in enumerate(PRICES)])


def test_rolling_and_anchored_windows() -> None:
    first, last = START, START + timedelta(minutes=19)
    ten, five = timedelta(minutes=10), timedelta(minutes=5)
    assert windows(first, last, ten, five, anchored=False) == [
        (first, first + ten, first + ten + five),
        (first + five, first + ten + five, first + ten + 2 * five),
    ]
    assert windows(first, last, ten, five, anchored=True) == [
        (first, first + ten, first + ten + five),
        (first, first + ten + five, first + ten + 2 * five),
    ]
    assert windows(first, last, timedelta(minutes=20), five, anchored=False) == []


def test_rolling_folds_are_exact(tape: Path, tmp_path: Path) -> None:
    result = run_walkforward(
        tape,
        "momentum",
        GRID,
        tmp_path / "wf",
        PipelineParams(),
        train=timedelta(minutes=10),
        test=timedelta(minutes=5),
    )
    first, second = result["folds"]
    # Fold 1, train minutes 0-9: 000 buys at 102 (minute 2) and holds 10 marked at 104.
    out, fees = buy("102")
    train_1 = 10 * Decimal("104") - out - fees  # 18.46949
    assert first["chosen"] == {
        "id": "momentum-000",
        "parameters": {"lookback_period": 2, "momentum_threshold": 0.01, "position_size": 10},
    }
    assert first["in_sample"]["total_pnl"] == pytest.approx(float(train_1), abs=1e-9)
    # Test minutes 10-14, a fresh account: buys at 106.08, sells at 103.9584.
    out, buy_fees = buy("106.08")
    back, sell_fees = sell("103.9584")
    test_1 = back - out - buy_fees - sell_fees  # -24.366586608
    assert first["out_of_sample"]["total_pnl"] == pytest.approx(float(test_1), abs=1e-9)
    assert first["out_of_sample"]["trades"] == 1
    # Fold 2, train minutes 5-14: 000 makes that same losing trade, 001 nothing: 001 wins.
    assert second["chosen"]["id"] == "momentum-001"
    assert second["in_sample"]["total_pnl"] == 0.0
    assert second["out_of_sample"]["total_pnl"] == 0.0
    assert second["train"] == {
        "start": (UTC_START + timedelta(minutes=5)).isoformat(),
        "end": (UTC_START + timedelta(minutes=15)).isoformat(),
        "days": 10 / 1440,
    }
    summary = result["summary"]
    assert summary["folds"] == 2
    assert summary["out_of_sample_total_pnl"] == pytest.approx(float(test_1), abs=1e-9)
    assert summary["in_sample_pnl_per_day"] == pytest.approx(float(train_1) / (20 / 1440), abs=1e-6)
    assert summary["out_of_sample_pnl_per_day"] == pytest.approx(float(test_1) / (10 / 1440), abs=1e-6)
    # Stitched equity ends at the first fold's start plus both test windows' P&L.
    stitched = result["stitched_equity"]
    assert stitched["initial"] == 1_000_000.0
    assert stitched["equity"][-1][1] == pytest.approx(1_000_000 + float(test_1), abs=1e-6)
    assert (tmp_path / "wf" / "walkforward.json").is_file()


def test_anchored_train_windows_grow_from_the_first_tick(tape: Path, tmp_path: Path) -> None:
    result = run_walkforward(
        tape,
        "momentum",
        GRID,
        tmp_path / "wf",
        PipelineParams(),
        train=timedelta(minutes=10),
        test=timedelta(minutes=5),
        anchored=True,
    )
    second = result["folds"][1]
    assert second["train"]["start"] == UTC_START.isoformat()
    # Train minutes 0-14 for 000: buy 102, buy 106.08, sell 103.9584, holding 10 marked at 103.9584.
    (o1, f1), (o2, f2), (b3, f3) = buy("102"), buy("106.08"), sell("103.9584")
    train_000 = b3 - o1 - f1 - o2 - f2 - f3 + 10 * Decimal("103.9584")  # -6.313096608
    swept = json.loads((tmp_path / "wf" / "folds" / "002" / "train" / "sweep.json").read_text())
    rows = {r["id"]: r for r in swept["combinations"]}
    assert rows["momentum-000"]["total_pnl"] == pytest.approx(float(train_000), abs=1e-9)
    assert second["chosen"]["id"] == "momentum-001"


def test_walkforward_command_prints_folds(tape: Path, tmp_path: Path) -> None:
    grid = tmp_path / "grid.yaml"
    grid.write_text(
        "lookback_period: 2\nmomentum_threshold: [0.01, 0.5]\nposition_size: 10\n", encoding="utf-8"
    )
    result = CliRunner().invoke(
        app,
        [
            "walkforward",
            "--ticks",
            str(tape),
            "--strategy",
            "momentum",
            "--grid",
            str(grid),
            "--train",
            "10m",
            "--test",
            "5m",
            "--out",
            str(tmp_path / "o"),
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "Walk-forward of momentum (rolling, train 10m, test 5m, by total_pnl)" in result.output
    assert "momentum-000" in result.output
    assert "momentum-001" in result.output
    bad = CliRunner().invoke(
        app,
        [
            "walkforward",
            "--ticks",
            str(tape),
            "--strategy",
            "momentum",
            "--grid",
            str(grid),
            "--train",
            "1h",
            "--test",
            "5m",
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert bad.exit_code == 2
    assert " ".join(bad.output.split()) == (
        "error: walkforward: the ticks span 0:19:00, not more than one train window of 1:00:00"
    )
