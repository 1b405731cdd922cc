"""The local stack: up/status/down, and servers killed and restarted under live sinks."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from bytewax import operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource, run_main

from alpha_panda.localstack import LocalStack
from connectors.errors import ServerStartError, StackError, redact_url
from connectors.localstack import POSTGRES, REDIS
from connectors.postgres import (
    LedgerSink,
    StrategyConfigSource,
    apply_migrations,
    seed_strategies,
    set_strategy_active,
)
from connectors.probes import probe_kafka, probe_postgres, probe_redis
from connectors.redis_portfolio import RedisPortfolioSink, read_portfolios
from tests.integration.builders import filled_out, pnl_out
from tests.ledger_rows import ledger_orders

pytestmark = pytest.mark.integration


@pytest.fixture
def data_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="alpha-panda-stack-"))
    yield path
    LocalStack(path).down()
    shutil.rmtree(path, ignore_errors=True)


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def _tree(root: int) -> set[int]:
    """``root`` and every process below it (Postgres backends lead their own groups)."""
    parent_of = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            parent_of[int(entry.name)] = int(fields[1])
    members = {root}
    grew = True
    while grew:
        below = {pid for pid, parent in parent_of.items() if parent in members} - members
        members |= below
        grew = bool(below)
    return members


def test_up_status_down(data_dir: Path) -> None:
    urls = LocalStack(data_dir).up()
    probe_kafka(urls.kafka)
    probe_redis(urls.redis)
    probe_postgres(urls.postgres)

    # Another instance (as a later CLI command would be) sees the same stack.
    other = LocalStack(data_dir)
    assert other.up() == urls  # idempotent: nothing restarted
    rows = {row.name: row for row in other.status()}
    assert set(rows) == {"kafka", "redis", "postgres"}
    assert all(row.alive and row.pid for row in rows.values())
    assert rows["postgres"].url == redact_url(urls.postgres)  # status never shows the password
    assert all(row.log_path and row.log_path.exists() for row in rows.values())
    assert {p.name for p in (data_dir / "run").iterdir()} == {"kafka.json", "redis.json", "postgres.json"}
    members = set().union(*(_tree(row.pid) for row in rows.values() if row.pid))
    assert len(members) > 3  # Postgres has its background workers

    assert sorted(other.down()) == ["kafka", "postgres", "redis"]
    assert not [pid for pid in members if _running(pid)]
    assert other.down() == []  # idempotent
    assert not any(row.alive for row in other.status())
    assert not list((data_dir / "run").iterdir())

    # Up again: same ports, Postgres data kept.
    again = LocalStack(data_dir).up()
    assert again == urls
    LocalStack(data_dir).down()


def test_external_servers_are_not_started_or_stopped(
    data_dir: Path, kafka_bootstrap: str, redis_url: str, postgres_url: str
) -> None:
    stack = LocalStack(data_dir)
    urls = stack.up(kafka_url=kafka_bootstrap, redis_url=redis_url, postgres_url=postgres_url)
    assert (urls.kafka, urls.redis, urls.postgres) == (kafka_bootstrap, redis_url, postgres_url)
    assert all(row.pid is None and row.alive for row in stack.status())
    assert stack.down() == []
    probe_redis(redis_url)


def test_unreachable_external_server_is_named(data_dir: Path, kafka_bootstrap: str) -> None:
    with pytest.raises(ServerStartError, match=r"redis: external server .*:\*\*\*@") as caught:
        LocalStack(data_dir).up(kafka_url=kafka_bootstrap, redis_url="redis://:hunter2@127.0.0.1:1/0")
    assert "hunter2" not in str(caught.value)


def test_processes_start_stop_and_report_failures(data_dir: Path) -> None:
    stack = LocalStack(data_dir, stop_timeout_s=1.0)
    record = stack.start_process(
        "sleeper", [sys.executable, "-c", "import time; print('hi', flush=True); time.sleep(60)"]
    )
    with pytest.raises(StackError, match="already running"):
        stack.start_process("sleeper", [sys.executable, "-c", "pass"])
    stubborn = stack.start_process(
        "stubborn",
        [
            sys.executable,
            "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)",
        ],
        stop_signal=signal.SIGTERM,
    )
    time.sleep(0.3)
    assert {row.name for row in stack.status() if row.alive} >= {"sleeper", "stubborn"}
    assert stack.stop_process("sleeper") is True
    assert stack.stop_process("sleeper") is False
    assert not _running(record.pid)
    assert "hi" in (data_dir / "logs" / "sleeper.log").read_text()
    assert stack.down() == ["stubborn"]  # SIGTERM ignored: SIGKILL after the timeout
    assert not _running(stubborn.pid)

    with pytest.raises(StackError, match="cannot execute"):
        stack.start_process("nothing", ["/nonexistent/binary"])


def test_unusable_data_dir_is_named(data_dir: Path) -> None:
    (data_dir / "postgres").write_text("not a directory")
    with pytest.raises(ServerStartError, match=r"postgres: cannot prepare the data directory"):
        LocalStack(data_dir).up()
    LocalStack(data_dir).down()


def test_server_that_dies_at_start_names_its_log(data_dir: Path) -> None:
    stack = LocalStack(data_dir, start_timeout_s=10)
    stack.up()
    stack.down()
    (data_dir / "postgres" / "data" / "PG_VERSION").write_text("7\n")  # a cluster it cannot run
    with pytest.raises(
        ServerStartError, match=r"postgres: exited before accepting .*\(log: .*postgres.log\)"
    ) as caught:
        stack.up()
    assert caught.value.log_path == data_dir / "logs" / "postgres.log"
    assert not (data_dir / "run" / "postgres.json").exists()
    stack.down()


def _kill_then_restart(stack: LocalStack, name: str, down_s: float) -> None:
    stack.kill_process(name)
    threading.Timer(down_s, stack.restart_server, args=(name,)).start()


def test_redis_restart_under_a_live_sink(own_stack: LocalStack) -> None:
    urls = own_stack.urls
    assert urls is not None
    items = [pnl_out("paper", f"s{i}", 1_000_000.0 - i, i) for i in range(12)]

    def crash_redis_once(item):
        if item is items[8]:
            _kill_then_restart(own_stack, REDIS, 0.7)
        return item

    flow = Dataflow("redis_restart")
    stream = op.map("crash", op.input("in", flow, TestingSource(items, batch_size=1)), crash_redis_once)
    op.output("redis", stream, RedisPortfolioSink(urls.redis))
    started = time.monotonic()
    run_main(flow)

    assert time.monotonic() - started >= 0.5  # the sink really waited for Redis
    stored = read_portfolios(urls.redis, "paper")
    assert {f"s{i}" for i in range(12)} <= set(stored)  # written before the crash: kept (AOF)


def test_postgres_restart_under_a_live_sink_and_config_source(own_stack: LocalStack) -> None:
    urls = own_stack.urls
    assert urls is not None
    apply_migrations(urls.postgres)
    seed_strategies(urls.postgres, [{"id": "cfg", "strategy_type": "momentum", "instruments": [1]}])
    source = StrategyConfigSource(urls.postgres, poll_s=0.05).build_part(
        "cfg", "strategy_configurations", None
    )
    assert source.next_batch()

    items = [filled_out("paper", "mom", f"o{i}") for i in range(6)]

    def crash_postgres_once(item):
        if item is items[3]:
            _kill_then_restart(own_stack, POSTGRES, 0.7)
        return item

    flow = Dataflow("postgres_restart")
    stream = op.map("crash", op.input("in", flow, TestingSource(items, batch_size=1)), crash_postgres_once)
    op.output("ledger", stream, LedgerSink(urls.postgres))
    run_main(flow)

    assert sorted(o["order_id"] for o in ledger_orders(urls.postgres, "paper")) == [f"o{i}" for i in range(6)]

    # The config source rode out the outage and still sees changes.
    set_strategy_active(urls.postgres, "cfg", False)
    deadline = time.monotonic() + 10
    emitted: list = []
    while not emitted and time.monotonic() < deadline:
        emitted = source.next_batch()
        time.sleep(0.05)
    source.close()
    assert emitted and emitted[0][0]["is_active"] is False


def test_killed_server_is_not_alive_until_started(own_stack: LocalStack) -> None:
    assert own_stack.kill_process(REDIS) is True
    assert own_stack.kill_process(REDIS) is False
    assert not {row.name: row.alive for row in own_stack.status()}[REDIS]
    url = own_stack.start_server(REDIS)
    probe_redis(url)
    assert os.path.exists(own_stack.log_path(REDIS))


def test_urls_are_redacted_for_logs() -> None:
    assert (
        redact_url("postgresql://app:s3cret@db.internal:5432/alpha")
        == "postgresql://app:***@db.internal:5432/alpha"
    )
    assert redact_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert redact_url("127.0.0.1:9092") == "127.0.0.1:9092"
