"""``alpha-panda report`` and ``replay --report`` over a real replay of ``examples/``.

The expected numbers are computed here straight from the replay's files,
with none of the report's code: equity points from the snapshot lines,
round trips by walking the fills, drawdown and returns by plain loops.
"""

from __future__ import annotations

import math
import subprocess
import sys
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from alpha_panda.cli import app
from alpha_panda.report import write_report

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
ALPHA_PANDA = Path(sys.executable).parent / "alpha-panda"
STARTING_CASH = 1_000_000.0  # DESIGN default, what the replay ran with


def read(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("examples-replay")
    done = subprocess.run(
        [
            str(ALPHA_PANDA),
            "replay",
            "--ticks",
            str(EXAMPLES / "ticks.jsonl"),
            "--strategies",
            str(EXAMPLES / "strategies.yaml"),
            "--out",
            str(out),
            "--quiet",
            "--report",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert f"report: {out / 'report.html'}" in done.stdout.replace("\n", "")
    return out


def snapshots_by_account(out: Path) -> dict[tuple[str, str], list[dict[str, Any]]]:
    accounts = defaultdict(list)
    for broker in ("paper", "zerodha"):
        for line in read(out / f"{broker}.pnl.snapshots.jsonl"):
            accounts[(broker, line["data"]["strategy_id"])].append(line["data"])
    return accounts


def fills_by_account(out: Path) -> dict[tuple[str, str], list[dict[str, Any]]]:
    accounts = defaultdict(list)
    for broker in ("paper", "zerodha"):
        for line in read(out / f"{broker}.orders.filled.jsonl"):
            accounts[(broker, line["data"]["strategy_id"])].append(line["data"])
    return accounts


def hand_round_trips(fills: list[dict[str, Any]]) -> list[tuple[int, Decimal, float]]:
    """(instrument, net P&L, seconds held) of each flat-to-flat cycle; the replay never crosses zero."""
    position: dict[int, int] = defaultdict(int)
    cash: dict[int, Decimal] = defaultdict(Decimal)
    opened: dict[int, datetime] = {}
    trips = []
    for f in fills:
        token, price, fees = f["instrument_token"], Decimal(repr(f["fill_price"])), Decimal(repr(f["fees"]))
        signed = f["quantity"] if f["side"] == "BUY" else -f["quantity"]
        if position[token] == 0:
            opened[token], cash[token] = utc(f["timestamp"]), Decimal(0)
        assert position[token] == 0 or (position[token] + signed) * position[token] >= 0
        position[token] += signed
        cash[token] -= price * signed + fees
        if position[token] == 0:
            held = (utc(f["timestamp"]) - opened[token]).total_seconds()
            trips.append((token, cash[token], held))
    return trips


def hand_max_drawdown(values: list[float]) -> float:
    peak, deepest = values[0], 0.0
    for value in values:
        peak = max(peak, value)
        deepest = min(deepest, value / peak - 1)
    return -deepest


def test_every_snapshot_is_an_equity_point_and_stats_match_the_files(replayed: Path) -> None:
    report = orjson.loads((replayed / "report.json").read_bytes())
    snapshots = snapshots_by_account(replayed)
    fills = fills_by_account(replayed)
    portfolio = orjson.loads((replayed / "portfolio.json").read_bytes())
    accounts = {(a["broker"], a["strategy_id"]): a for a in report["accounts"]}
    assert sorted(accounts) == sorted(snapshots) == sorted(fills)
    assert len(accounts) == 5  # paper x 3 strategies, zerodha x 2 (momentum_parked is inactive)
    for key, account in accounts.items():
        own = sorted(snapshots[key], key=lambda s: utc(s["timestamp"]))
        assert account["equity"] == [[utc(s["timestamp"]).isoformat(), s["total_value"]] for s in own]
        values = [s["total_value"] for s in own]
        stats = account["stats"]
        assert stats["initial_equity"] == STARTING_CASH
        assert stats["final_equity"] == values[-1] == portfolio[key[0]][key[1]]["total_value"]
        assert stats["total_return"] == values[-1] / STARTING_CASH - 1
        assert stats["max_drawdown"] == hand_max_drawdown([STARTING_CASH, *values])
        assert stats["fees_paid"] == float(sum(Decimal(repr(f["fees"])) for f in fills[key]))
        trips = hand_round_trips(fills[key])
        nets = [net for _, net, _ in trips]
        assert stats["trades"] == len(account["round_trips"]) == len(trips)
        assert [t["net_pnl"] for t in account["round_trips"]] == [float(n) for n in nets]
        assert stats["wins"] == sum(1 for n in nets if n > 0)
        assert stats["win_rate"] == stats["wins"] / len(trips)
        assert stats["profit_factor"] == float(sum(n for n in nets if n > 0) / -sum(n for n in nets if n < 0))
        assert stats["expectancy"] == float(sum(nets) / len(nets))
        assert stats["average_holding_seconds"] == math.fsum(h for *_, h in trips) / len(trips)
    assert sum(a["stats"]["trades"] for a in accounts.values()) == report["book"]["stats"]["trades"] == 53


def test_book_returns_match_a_hand_sampling_of_the_files(replayed: Path) -> None:
    report = orjson.loads((replayed / "report.json").read_bytes())
    snapshots = snapshots_by_account(replayed)
    fills = fills_by_account(replayed)
    times = [utc(s["timestamp"]) for own in snapshots.values() for s in own]
    times += [utc(f["timestamp"]) for own in fills.values() for f in own]
    start, end = min(times), max(times)
    assert report["window"] == {"start": start.isoformat(), "end": end.isoformat()}
    assert report["interval"] == {"seconds": 1.0, "label": "1 s"}  # a 145 s run: 1 s gives <= 500
    grid_start = start.replace(microsecond=0)
    count = math.ceil((end - grid_start).total_seconds())

    def book_at(moment: datetime) -> float:
        total = 0.0
        for own in snapshots.values():
            seen = [s["total_value"] for s in own if utc(s["timestamp"]) <= moment]
            total += seen[-1] if seen else STARTING_CASH
        return total

    values = [STARTING_CASH * 5] + [book_at(grid_start + timedelta(seconds=k)) for k in range(1, count + 1)]
    returns = [b / a - 1 for a, b in zip(values, values[1:], strict=False)]
    mean = sum(returns) / len(returns)
    std = math.sqrt(sum((r - mean) ** 2 for r in returns) / (len(returns) - 1))
    downside = math.sqrt(sum(min(r, 0.0) ** 2 for r in returns) / len(returns))
    per_year = math.sqrt(365.25 * 86400)
    book = report["book"]["stats"]
    assert book["intervals"] == len(returns) == 146
    assert book["total_return"] == pytest.approx(values[-1] / values[0] - 1, rel=1e-12)
    assert book["annualised_volatility"] == pytest.approx(std * per_year, rel=1e-9)
    assert book["sharpe"] == pytest.approx(mean / std * per_year, rel=1e-9)
    assert book["sortino"] == pytest.approx(mean / downside * per_year, rel=1e-9)
    assert book["final_equity"] == pytest.approx(sum(a["stats"]["final_equity"] for a in report["accounts"]))


def test_the_page_is_self_contained_and_reports_are_repeatable(replayed: Path) -> None:
    page = (replayed / "report.html").read_text(encoding="utf-8")
    assert "<script src" not in page  # plotly.js is inline: the page works offline
    assert "plotly.js v" in page
    for name in (
        "paper / momentum_fast",
        "zerodha / mean_reversion",
        "round trips",
        "per <b>1 s</b> interval",
    ):
        assert name in page
    assert page.count('class="plotly-graph-div"') == 7  # book, comparison, 5 accounts
    before = (replayed / "report.json").read_bytes(), page
    write_report(replayed)
    assert ((replayed / "report.json").read_bytes(), (replayed / "report.html").read_text("utf-8")) == before


def test_fewer_snapshots_still_give_one_point_each_and_the_same_round_trips(
    replayed: Path, tmp_path: Path
) -> None:
    # An account may publish one snapshot per interval (plus one at the end) rather than one per fill.
    for path in replayed.glob("*.jsonl"):
        lines = path.read_bytes().splitlines()
        if path.name.endswith(".pnl.snapshots.jsonl"):
            last = {orjson.loads(line)["data"]["strategy_id"]: i for i, line in enumerate(lines)}
            lines = [line for i, line in enumerate(lines) if i % 7 == 0 or i in last.values()]
        (tmp_path / path.name).write_bytes(b"\n".join(lines) + b"\n")
    (tmp_path / "portfolio.json").write_bytes((replayed / "portfolio.json").read_bytes())
    result = CliRunner().invoke(app, ["report", "--from", str(tmp_path)])
    assert result.exit_code == 0, result.output
    thin = orjson.loads((tmp_path / "report.json").read_bytes())
    full = orjson.loads((replayed / "report.json").read_bytes())
    kept = snapshots_by_account(tmp_path)
    for mine, theirs in zip(thin["accounts"], full["accounts"], strict=True):
        assert len(mine["equity"]) == len(kept[(mine["broker"], mine["strategy_id"])])
        assert mine["round_trips"] == theirs["round_trips"]
        assert mine["stats"]["final_equity"] == theirs["stats"]["final_equity"]
        assert mine["stats"]["trades"] == theirs["stats"]["trades"]


def said(result: Any) -> str:
    return str(result.output).replace("\n", "")  # rich wraps long lines


def test_bad_usage_exits_2_with_a_clear_message(tmp_path: Path, replayed: Path) -> None:
    runner = CliRunner()
    empty = runner.invoke(app, ["report", "--from", str(tmp_path)])
    assert empty.exit_code == 2
    assert "holds no replay outputs" in said(empty)
    missing = runner.invoke(app, ["report", "--from", str(tmp_path / "nope")])
    assert missing.exit_code == 2
    assert "is not a directory" in said(missing)
    interval = runner.invoke(app, ["report", "--from", str(replayed), "--interval", "often"])
    assert interval.exit_code == 2
    assert "--interval must be a positive duration" in said(interval)
    backwards = runner.invoke(
        app, ["report", "--from", str(replayed), "--since", "2024-01-03", "--until", "2024-01-02"]
    )
    assert backwards.exit_code == 2
    assert "is after --until" in said(backwards)
    (tmp_path / "paper.orders.filled.jsonl").write_bytes(b'{"type": "order_filled"}\n')
    broken = runner.invoke(app, ["report", "--from", str(tmp_path)])
    assert broken.exit_code == 2
    assert "paper.orders.filled.jsonl line 1" in said(broken)
