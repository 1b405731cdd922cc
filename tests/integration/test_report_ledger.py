"""``alpha-panda report --from ledger`` against the session's real Postgres (a database of its own)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
import psycopg
import pytest

from connectors.postgres import apply_migrations, ledger_batch, write_ledger
from schemas.codec import decode
from schemas.envelope import Outbound, envelop, event_id
from schemas.events import OrderFilled
from schemas.topics import ORDERS_FILLED, account_key, broker_topic

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
ALPHA_PANDA = Path(sys.executable).parent / "alpha-panda"
T0 = datetime(2031, 5, 6, 4, 0, tzinfo=UTC)


@pytest.fixture
def ledger_db(migrated_postgres: str) -> Iterator[str]:
    """A fresh database with the migrations applied, dropped afterwards."""
    name = f"ap_report_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(migrated_postgres, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = urlunsplit(urlsplit(migrated_postgres)._replace(path=f"/{name}"))
    apply_migrations(url)
    try:
        yield url
    finally:
        with psycopg.connect(migrated_postgres, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def write_fills(url: str, items: list[Outbound]) -> None:
    with psycopg.connect(url) as conn, conn.transaction():
        write_ledger(conn, ledger_batch(items))


def filled(
    broker: str, order_id: str, side: str, quantity: int, price: float, fees: float, s: int
) -> Outbound:
    data = OrderFilled(
        order_id=order_id,
        strategy_id="mom",
        instrument_token=256265,
        side=side,  # type: ignore[arg-type]
        quantity=quantity,
        timestamp=T0 + timedelta(seconds=s),
        broker=broker,
        execution_mode="paper" if broker == "paper" else "dry_run",
        fill_price=price,
        fees=fees,
    )
    envelope = envelop(
        data,
        id=event_id("order_filled", broker, order_id),
        ts=data.timestamp,
        broker=broker,  # type: ignore[arg-type]
        cause=None,
        source="test",
        key=account_key("mom"),
    )
    return Outbound(broker_topic(broker, ORDERS_FILLED), envelope.key, envelope)


def run_report(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "POSTGRES_URL": url}
    return subprocess.run(
        [str(ALPHA_PANDA), "report", "--from", "ledger", *args],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        timeout=120,
    )


def load(path: Path) -> dict[str, Any]:
    return orjson.loads(path.read_bytes())


def test_ledger_report_over_a_window_by_hand(ledger_db: str, tmp_path: Path) -> None:
    write_fills(
        ledger_db,
        [
            filled("paper", "p1", "BUY", 100, 10.0, 1.0, 0),  # before --since: sets the starting position
            filled("paper", "p2", "SELL", 100, 12.0, 1.2, 30),
            filled("paper", "p3", "BUY", 50, 11.0, 0.55, 60),
            filled("paper", "p4", "SELL", 50, 13.0, 0.65, 200),  # after --until: left out
            filled("zerodha", "z1", "BUY", 10, 20.0, 0.2, 10),
            filled("zerodha", "z2", "SELL", 10, 19.0, 0.19, 20),
        ],
    )
    since, until = (T0 + timedelta(seconds=5)).isoformat(), (T0 + timedelta(seconds=100)).isoformat()
    done = run_report(ledger_db, "--out", str(tmp_path), "--since", since, "--until", until)
    assert done.returncode == 0, done.stderr
    report = load(tmp_path / "report.json")
    assert report["source"] == {
        "kind": "ledger",
        "since": since,
        "until": until,
        "starting_cash": 1_000_000.0,
    }
    assert report["window"] == {"start": since, "end": until}
    assert report["interval"]["label"] == "1 s"
    paper, zerodha = report["accounts"]
    assert (paper["broker"], zerodha["broker"]) == ("paper", "zerodha")

    # paper: BUY 100 @ 10 (fee 1) before the window leaves 998,999 cash + 1,000 of stock;
    # SELL 100 @ 12 (fee 1.2) -> 1,000,197.8 flat; BUY 50 @ 11 (fee 0.55) -> 999,647.25 + 550 of stock.
    assert paper["equity"] == [
        [(T0 + timedelta(seconds=30)).isoformat(), 1_000_197.8],
        [(T0 + timedelta(seconds=60)).isoformat(), 1_000_197.25],
    ]
    stats = paper["stats"]
    assert (stats["initial_equity"], stats["final_equity"]) == (999_999.0, 1_000_197.25)
    assert stats["total_return"] == 1_000_197.25 / 999_999.0 - 1
    assert stats["max_drawdown"] == 1 - 1_000_197.25 / 1_000_197.8
    assert stats["max_drawdown_amount"] == pytest.approx(0.55, abs=1e-9)
    assert stats["max_drawdown_recovery"] is None
    assert stats["max_drawdown_duration_seconds"] == 70.0  # from the peak at +30 s to the end at +100 s
    assert stats["fees_paid"] == 1.75  # 1.2 + 0.55 inside the window
    assert stats["exposure"] == (25 + 40) / 95  # held +5..+30 and +60..+100
    assert [
        (t["entry_price"], t["exit_price"], t["net_pnl"], t["holding_seconds"]) for t in paper["round_trips"]
    ] == [(10.0, 12.0, 197.8, 30.0)]
    assert paper["open_positions"] == [
        {
            "instrument_token": 256265,
            "quantity": 50,
            "entry_time": (T0 + timedelta(seconds=60)).isoformat(),
            "entry_price": 11.0,
            "fees": 0.55,
        }
    ]
    # zerodha: BUY 10 @ 20, SELL 10 @ 19 -> -10 gross, 0.39 fees
    assert zerodha["equity"][-1][1] == 999_989.61
    assert [t["net_pnl"] for t in zerodha["round_trips"]] == [-10.39]

    book = report["book"]["stats"]
    assert (book["trades"], book["wins"], book["losses"]) == (2, 1, 1)
    assert book["profit_factor"] == 197.8 / 10.39
    assert book["expectancy"] == 93.705  # (197.8 - 10.39) / 2, in Decimal
    assert book["initial_equity"] == 999_999.0 + 1_000_000.0
    assert book["final_equity"] == 1_000_197.25 + 999_989.61
    assert (tmp_path / "report.html").stat().st_size > 1_000_000  # plotly.js inline


def test_ledger_of_a_replay_gives_the_replay_s_round_trips(ledger_db: str, tmp_path: Path) -> None:
    replay_dir = tmp_path / "replay"
    done = subprocess.run(
        [
            str(ALPHA_PANDA),
            "replay",
            "--ticks",
            str(EXAMPLES / "ticks.jsonl"),
            "--strategies",
            str(EXAMPLES / "strategies.yaml"),
            "--out",
            str(replay_dir),
            "--quiet",
            "--report",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    items = []
    for path in sorted(replay_dir.glob("*.orders.filled.jsonl")):
        topic = path.name.removesuffix(".jsonl")
        for line in path.read_bytes().splitlines():
            envelope = decode(line, topic)
            items.append(Outbound(topic, envelope.key, envelope))
    write_fills(ledger_db, items)
    write_fills(ledger_db, items)  # idempotent ledger: no second row
    ledger_out = tmp_path / "ledger"
    done = run_report(ledger_db, "--out", str(ledger_out))
    assert done.returncode == 0, done.stderr

    from_dir = load(replay_dir / "report.json")
    from_ledger = load(ledger_out / "report.json")
    assert from_ledger["equity_source"].startswith("fills of the ledger")
    assert [(a["broker"], a["strategy_id"]) for a in from_ledger["accounts"]] == [
        (a["broker"], a["strategy_id"]) for a in from_dir["accounts"]
    ]
    for mine, theirs in zip(from_ledger["accounts"], from_dir["accounts"], strict=True):
        fills = sum(1 for item in items if item.envelope.data.strategy_id == mine["strategy_id"]
                    and item.envelope.broker == mine["broker"])  # fmt: skip
        assert len(mine["equity"]) == fills  # one point per fill: the ledger has no snapshots
        assert mine["round_trips"] == theirs["round_trips"]
        assert mine["open_positions"] == theirs["open_positions"]
        for name in ("trades", "wins", "win_rate", "profit_factor", "expectancy", "fees_paid"):
            assert mine["stats"][name] == theirs["stats"][name], name
    assert from_ledger["book"]["stats"]["trades"] == 53


def test_an_empty_ledger_exits_2(ledger_db: str, tmp_path: Path) -> None:
    done = run_report(ledger_db, "--out", str(tmp_path))
    assert done.returncode == 2
    assert "nothing to report in ledger: no snapshots or fills" in done.stderr.replace("\n", " ")
