"""``alpha-panda replay`` end to end, on files, with no servers."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from alpha_panda.cli import app
from alpha_panda.replay import run_replay
from alpha_panda.strategy_file import load_strategy_file
from connectors.simulator import MarketSpec, simulate_lines
from tests.flows.conftest import MOMENTUM_ONLY, tick_line, write_lines

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def read(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


@pytest.fixture
def momentum_file(tmp_path: Path) -> Path:
    path = tmp_path / "strategies.yaml"
    path.write_text(MOMENTUM_ONLY)
    return path


def design_example_lines() -> list[bytes]:
    return [tick_line(256265, 100.0, s) for s in range(19)] + [tick_line(256265, 101.5, 19)]


def test_design_example_through_the_cli(tmp_path: Path, momentum_file: Path) -> None:
    ticks = write_lines(tmp_path / "ticks.jsonl", design_example_lines())
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        ["replay", "--ticks", str(ticks), "--strategies", str(momentum_file), "--out", str(out), "--quiet"],
    )
    assert result.exit_code == 0, result.output
    assert "mom" in result.output
    assert "paper.orders.filled" in result.output  # messages per topic

    signals = read(out / "paper.signals.raw.jsonl")
    assert [s["data"]["signal_type"] for s in signals] == ["BUY"]
    assert signals[0]["key"] == "mom:256265"
    assert signals[0]["data"]["quantity"] == 100
    assert len(read(out / "paper.signals.validated.jsonl")) == 1
    fills = read(out / "paper.orders.filled.jsonl")
    assert len(fills) == 1
    assert fills[0]["data"]["fill_price"] == pytest.approx(101.55075, abs=1e-9)
    assert fills[0]["data"]["fees"] == pytest.approx(10.155075, abs=1e-9)
    assert fills[0]["key"] == "mom"
    assert fills[0]["correlation_id"] == signals[0]["correlation_id"]

    portfolio = json.loads((out / "portfolio.json").read_text())
    account = portfolio["paper"]["mom"]
    assert account["cash"] == pytest.approx(989834.769925, abs=1e-6)
    assert account["positions"]["256265"]["quantity"] == 100
    assert account["positions"]["256265"]["last_price"] == pytest.approx(101.5)
    assert account["total_value"] == pytest.approx(989834.769925 + 100 * 101.5, abs=1e-6)
    assert portfolio["zerodha"] == {}
    assert not (out / "zerodha.signals.raw.jsonl").exists()
    assert not (out / "market.ticks.dlq.jsonl").exists()


BAD_LINES = [
    b"this is not json",
    orjson.dumps(
        {
            "type": "market_tick",
            "data": {"instrument_token": 256265, "timestamp": "2024-01-02T09:15:00+05:30"},
        }
    ),
    orjson.dumps(
        {
            "type": "market_tick",
            "data": {"instrument_token": 256265, "last_price": 0, "timestamp": "2024-01-02T09:15:00+05:30"},
        }
    ),
    orjson.dumps(
        {
            "type": "market_tick",
            "data": {
                "instrument_token": 256265,
                "last_price": -5.0,
                "timestamp": "2024-01-02T09:15:00+05:30",
            },
        }
    ),
    b'{"type":"market_tick","data":{"instrument_token":256265,"last_price":NaN,"timestamp":"2024-01-02T09:15:00+05:30"}}',
    b"\xff\xfe not utf-8",
]


def test_bad_lines_go_to_the_dlq_and_change_nothing_else(tmp_path: Path, momentum_file: Path) -> None:
    configs = load_strategy_file(momentum_file)
    clean = write_lines(tmp_path / "clean.jsonl", design_example_lines())
    mixed_lines = design_example_lines()
    for i, bad in enumerate(BAD_LINES):
        mixed_lines.insert(3 * i + 1, bad)
    mixed = write_lines(tmp_path / "mixed.jsonl", mixed_lines)

    clean_summary = run_replay(clean, configs, tmp_path / "clean_out")
    mixed_summary = run_replay(mixed, configs, tmp_path / "mixed_out")

    assert mixed_summary.dead_letters == len(BAD_LINES)
    assert mixed_summary.ticks == clean_summary.ticks == 20
    letters = read(tmp_path / "mixed_out" / "market.ticks.dlq.jsonl")
    reasons = [letter["data"]["failure_info"]["error_message"] for letter in letters]
    assert "malformed" in reasons[0]
    assert "last_price" in reasons[1]
    assert "last_price must be" in reasons[2]
    assert "last_price must be" in reasons[3]
    assert all(letter["data"]["failure_info"]["error_type"] == "poison" for letter in letters)
    assert letters[5]["data"]["original_message"]["value_encoding"] == "base64"
    assert [letter["data"]["dlq_metadata"]["original_offset"] for letter in letters] == [2, 5, 8, 11, 14, 17]
    for name in ("paper.signals.raw", "paper.orders.filled", "paper.pnl.snapshots"):
        assert (tmp_path / "clean_out" / f"{name}.jsonl").read_bytes() == (
            tmp_path / "mixed_out" / f"{name}.jsonl"
        ).read_bytes()
    assert (tmp_path / "clean_out" / "portfolio.json").read_bytes() == (
        tmp_path / "mixed_out" / "portfolio.json"
    ).read_bytes()


def test_two_replays_are_byte_identical(tmp_path: Path) -> None:
    ticks = tmp_path / "ticks.jsonl"
    ticks.write_bytes(b"".join(simulate_lines(MarketSpec(instruments=6, ticks_per_instrument=800, seed=11))))
    configs = load_strategy_file(EXAMPLES / "strategies.yaml")
    first = run_replay(ticks, configs, tmp_path / "a")
    run_replay(ticks, configs, tmp_path / "b")
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "b").iterdir())
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    fills = sum(a.fills for a in first.accounts.values())
    assert fills > 0
    assert {broker for broker, _ in first.accounts} == {"paper", "zerodha"}


def test_csv_ticks_give_the_same_fills_as_jsonl(tmp_path: Path, momentum_file: Path) -> None:
    configs = load_strategy_file(momentum_file)
    rows = ["instrument_token,last_price,timestamp,volume"]
    for line in design_example_lines():
        data = orjson.loads(line)["data"]
        rows.append(f"{data['instrument_token']},{data['last_price']},{data['timestamp']},10")
    rows.insert(5, "256265,abc,2024-01-02T09:15:00+05:30,1")
    csv_file = tmp_path / "ticks.csv"
    csv_file.write_text("\n".join(rows) + "\n")
    summary = run_replay(csv_file, configs, tmp_path / "csv_out")
    assert summary.ticks == 20
    assert summary.dead_letters == 1
    fills = read(tmp_path / "csv_out" / "paper.orders.filled.jsonl")
    assert [f["data"]["fill_price"] for f in fills] == [pytest.approx(101.55075)]
