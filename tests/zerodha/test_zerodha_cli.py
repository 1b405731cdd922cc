"""The Zerodha commands as a user runs them: halt/resume in a stream, --cancel-open, reconcile, login.

The stream is a Bytewax flow placing one order every 50 ms through the
live executor while ``alpha-panda halt`` and ``resume`` run beside it.

Each runs the real ``alpha-panda`` console script against the session's
Postgres and Redis and the local Kite server; the fake credentials must
appear in no output.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import bytewax.operators as op
import orjson
import pytest
from bytewax.dataflow import Dataflow
from bytewax.inputs import DynamicSource, StatelessSourcePartition
from bytewax.testing import TestingSink, run_main
from pydantic import SecretStr

from connectors.kite.halts import clear_halts
from connectors.redis_portfolio import portfolio_key, redis_client
from dataflows.live import Servers
from dataflows.settings import Settings
from dataflows.zerodha import halt_flags
from schemas.envelope import FailedEnvelope, SubmittedEnvelope
from tests.zerodha.conftest import validated
from tests.zerodha.kite_server import (
    ACCESS_TOKEN,
    API_KEY,
    API_SECRET,
    NEW_ACCESS_TOKEN,
    REQUEST_TOKEN,
    FakeKite,
)
from tests.zerodha.test_live_orders import executor, live_settings, seed

pytestmark = pytest.mark.integration
CLI = str(Path(sys.executable).with_name("alpha-panda"))
SECRETS = (ACCESS_TOKEN, API_SECRET, NEW_ACCESS_TOKEN)


def cli_env(kite: FakeKite, servers: Servers, data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KITE_", "ZERODHA_"))}
    env.update(
        KITE_API_URL=kite.base_url,
        KITE_API_KEY=API_KEY,
        KITE_ACCESS_TOKEN=ACCESS_TOKEN,
        KITE_API_SECRET=API_SECRET,
        POSTGRES_URL=servers.postgres,
        REDIS_URL=servers.redis,
        KAFKA_BOOTSTRAP_SERVERS=servers.kafka,
        DATA_DIR=str(data_dir),
        COLUMNS="200",
        **extra,
    )
    return env


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=120, check=False)
    for secret in SECRETS:
        assert secret not in done.stdout + done.stderr
    return done


@pytest.fixture
def servers(migrated_postgres: str, redis_url: str, kafka_bootstrap: str) -> Servers:
    return Servers(kafka_bootstrap, redis_url, migrated_postgres)


def test_kill_switch_during_a_stream(
    kite: FakeKite, servers: Servers, token: int, unique: str, tmp_path: Path
) -> None:
    strategy = f"stream_{unique}"
    seed(servers.postgres, strategy, token)
    ex = executor(kite, servers, halt_refresh_s=1.0)
    flags = halt_flags(live_settings(kite, halt_refresh_s=1.0), servers)  # what risk will poll
    env = cli_env(kite, servers, tmp_path)
    results: list[tuple[float, Any]] = []
    stop = threading.Event()
    signals = (validated(strategy, token, quantity=1, price=10.0, n=n) for n in range(10_000))

    class Paced(StatelessSourcePartition[Any]):
        """One validated signal every 50 ms until the test says stop."""

        def next_batch(self) -> list[Any]:
            if stop.is_set():
                raise StopIteration
            return [next(signals)]

        def next_awake(self) -> datetime:
            return datetime.now(UTC) + timedelta(milliseconds=50)

    class PacedSource(DynamicSource[Any]):
        def build(self, step_id: str, worker_index: int, worker_count: int) -> Paced:
            return Paced()

    def execute(signal: Any) -> list[tuple[float, Any]]:
        started = time.monotonic()
        return [(started, out) for out in ex.execute(signal)]

    flow = Dataflow("kill_switch_stream")
    orders = op.flat_map("execute", op.input("signals", flow, PacedSource()), execute)
    op.output("orders", orders, TestingSink(results))
    worker = threading.Thread(target=run_main, args=(flow,))
    worker.start()
    try:
        time.sleep(1.0)
        halt_asked = time.monotonic()
        halted = run(env, "halt", "--broker", "zerodha", "--reason", "desk says stop")
        halt_done = time.monotonic()
        assert halted.returncode == 0, halted.stderr
        assert (
            "halted zerodha/*: new signals are rejected (halted) and no live order is placed" in halted.stdout
        )
        time.sleep(1.5)
        assert flags.reason("zerodha", strategy) == "halted: zerodha/* is halted: desk says stop"
        assert flags.reason("paper", strategy) is None
        resume_asked = time.monotonic()
        resumed = run(env, "resume", "--broker", "zerodha")
        resume_done = time.monotonic()
        assert resumed.returncode == 0, resumed.stderr
        assert resumed.stdout.strip() == "resumed: zerodha/*"
        time.sleep(1.5)
        assert flags.reason("zerodha", strategy) is None
    finally:
        stop.set()
        worker.join()
        clear_halts(servers.postgres, servers.redis, "zerodha", None)
    before = [out for at, out in results if at < halt_asked]
    during = [out for at, out in results if halt_done + 1.0 <= at < resume_asked]
    after = [out for at, out in results if at >= resume_done + 1.0]
    assert before and during and after
    assert all(isinstance(out, SubmittedEnvelope) for out in before + after)
    assert all(isinstance(out, FailedEnvelope) for out in during)
    assert {out.data.error_message.split(": ", 2)[-1] for out in during} == {
        "halted: zerodha/* is halted: desk says stop"
    }
    placed = len(kite.placements())
    assert placed == len([o for _, o in results if isinstance(o, SubmittedEnvelope)])


def test_halt_a_strategy_with_cancel_open(
    kite: FakeKite, servers: Servers, token: int, unique: str, tmp_path: Path
) -> None:
    mine, other = f"cxl_{unique}", f"keep_{unique}"
    for strategy in (mine, other):
        seed(servers.postgres, strategy, token)
    ex = executor(kite, servers)
    for n, strategy in enumerate((mine, mine, other)):
        ex.execute(validated(strategy, token, quantity=5, price=10.0, n=n))
    first = next(iter(kite.orders))
    kite.fill(first, 5, 10.0)  # complete: nothing to cancel
    env = cli_env(kite, servers, tmp_path)
    try:
        done = run(env, "halt", "--strategy", mine, "--cancel-open")
        assert done.returncode == 0, done.stderr
        assert f"halted */{mine}" in done.stdout
        assert "cancelled 1 open zerodha order(s)" in done.stdout
        statuses = sorted(o["status"] for o in kite.orders.values())
        assert statuses == ["CANCELLED", "COMPLETE", "OPEN"]  # the other strategy's order stays open
    finally:
        clear_halts(servers.postgres, servers.redis, None, mine)


def snapshot(strategy: str, positions: dict[int, tuple[int, float]]) -> dict[str, Any]:
    return {
        "strategy_id": strategy,
        "broker": "zerodha",
        "cash": 900000.0,
        "positions": {
            str(t): {
                "quantity": q,
                "average_price": p,
                "last_price": p,
                "realized_pnl": 0.0,
                "unrealized_pnl": 0.0,
            }
            for t, (q, p) in positions.items()
        },
        "realized_pnl": 0.0,
        "unrealized_pnl": 0.0,
        "total_pnl": 0.0,
        "fees_paid": 0.0,
        "total_value": 1000000.0,
        "timestamp": "2024-01-02T04:00:00+00:00",
    }


def test_reconcile_reports_and_adopts_a_position_difference(
    kite: FakeKite, servers: Servers, unique: str, tmp_path: Path
) -> None:
    redis_url = servers.redis.rsplit("/", 1)[0] + "/11"  # a database of its own: reconcile reads them all
    isolated = Servers(servers.kafka, redis_url, servers.postgres)
    a, b = f"rec_a_{unique}", f"rec_b_{unique}"
    client = redis_client(redis_url)
    try:
        client.set(
            portfolio_key("zerodha", a),
            orjson.dumps(snapshot(a, {408065: (10, 1500.0), 2953217: (3, 3500.0)})),
        )
        client.set(portfolio_key("zerodha", b), orjson.dumps(snapshot(b, {408065: (5, 1490.0)})))
        kite.positions = [
            {
                "tradingsymbol": "INFY",
                "exchange": "NSE",
                "instrument_token": 408065,
                "product": "MIS",
                "quantity": 15,
                "average_price": 1496.0,
            },
            {
                "tradingsymbol": "SBIN",
                "exchange": "NSE",
                "instrument_token": 779521,
                "product": "MIS",
                "quantity": 0,
                "average_price": 0.0,
            },
        ]
        kite.holdings = [
            {
                "tradingsymbol": "TCS",
                "exchange": "NSE",
                "instrument_token": 2953217,
                "product": "CNC",
                "quantity": 2,
                "t1_quantity": 2,
                "average_price": 3400.0,
            },
        ]
        env = cli_env(kite, isolated, tmp_path)
        report = run(env, "reconcile", "--broker", "zerodha")
        assert report.returncode == 1, report.stderr
        rows = [line.split("│")[1:-1] for line in report.stdout.splitlines() if line.startswith("│ ")]
        cells = [[c.strip() for c in row] for row in rows]
        assert ["2953217", "NSE:TCS", "3", "4", "+1", "3,400.00"] in cells
        assert not any(row[0] == "408065" for row in cells)  # 10 + 5 = 15 on both sides
        assert run(env, "kite", "reconcile").returncode == 1  # the same, under `kite`
        adopted = run(env, "reconcile", "--broker", "zerodha", "--adopt")
        assert adopted.returncode == 0, adopted.stdout + adopted.stderr
        assert f"2953217: adopted into {a}: 3 -> 4" in adopted.stdout
        stored = orjson.loads(client.get(portfolio_key("zerodha", a)) or b"{}")
        assert stored["positions"]["2953217"]["quantity"] == 4
        assert stored["positions"]["2953217"]["average_price"] == 3400.0
        assert stored["cash"] == 900000.0
        again = run(env, "reconcile", "--broker", "zerodha")
        assert (again.returncode, again.stdout.strip()) == (
            0,
            "zerodha: our positions match Kite's positions and holdings",
        )
        unknown = run(env, "reconcile", "--broker", "nse")
        assert unknown.returncode == 2
        assert "reconcile --broker nse: the brokers are paper, zerodha" in " ".join(unknown.stderr.split())
    finally:
        client.delete(portfolio_key("zerodha", a), portfolio_key("zerodha", b))
        client.close()


def test_kite_login_stores_the_token_as_a_0600_secret(
    kite: FakeKite, servers: Servers, tmp_path: Path
) -> None:
    env = cli_env(kite, servers, tmp_path)
    del env["KITE_ACCESS_TOKEN"]
    done = run(env, "kite", "login", "--request-token", REQUEST_TOKEN)
    assert done.returncode == 0, done.stderr
    assert "1. log in at https://kite.zerodha.com/connect/login?v=3&api_key=fake-api-key" in done.stdout
    path = tmp_path / "secrets" / "kite_access_token"
    assert f"access token for AB1234 stored in {path} (mode 0600)" in done.stdout
    assert "expires at about 06:00 IST tomorrow" in done.stdout
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert path.read_text() == NEW_ACCESS_TOKEN
    [session] = [r for r in kite.requests if r.path == "/session/token"]
    assert session.form["checksum"] != API_SECRET and API_SECRET not in str(session.form)
    live = Settings(data_dir=tmp_path, zerodha_live_trading=True, kite_api_key=SecretStr(API_KEY))
    assert live.kite_access_token.get_secret_value() == NEW_ACCESS_TOKEN
    assert live.zerodha_live is True
    bad = run(env, "kite", "login", "--request-token", "used-token")
    assert bad.returncode == 2
    assert (
        bad.stderr.strip()
        == "error: kite session: Kite TokenException (HTTP 403): Token is invalid or has expired."
    )
