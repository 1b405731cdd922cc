"""The all-in-one pipeline as a 2-process Bytewax cluster on loopback, against real servers.

What the StatefulSets run, on one machine: each process is started through
``python -m alpha_panda.cluster`` (recovery partition per process in its own
directory, then ``python -m bytewax.run dataflows.pipeline -i N -a ...``).
Its ledger and portfolios must equal those of one plain
``python -m bytewax.run dataflows.pipeline`` process over the same ticks.
Only public behaviour is used: the flow module, its environment, and what
lands in Postgres and Redis.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
import redis

from alpha_panda.stack import StackUrls
from connectors.postgres import apply_migrations, ledger_orders, seed_strategies
from tests.integration.live_world import World, live_world, simulated_ticks

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RUN_TIMEOUT_S = 120


@pytest.fixture
def world(redis_url: str, postgres_url: str) -> Iterator[World]:
    with live_world(redis_url, postgres_url) as w:
        yield w


@pytest.fixture
def second_database(postgres_url: str) -> Iterator[str]:
    name = f"ap_cluster_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = urlunsplit(urlsplit(postgres_url)._replace(path=f"/{name}"))
    apply_migrations(url)
    try:
        yield url
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _env(urls: StackUrls, data_dir: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": urls.kafka,
        "REDIS_URL": urls.redis,
        "POSTGRES_URL": urls.postgres,
        "DATA_DIR": str(data_dir),
        "KAFKA_TAIL": "false",
        "METRICS_PORT": "0",
        **extra,
    }


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _outcome(world: World) -> tuple[list[tuple[Any, ...]], set[tuple[Any, ...]], dict[str, Any]]:
    orders = sorted(
        (r["broker"], r["order_id"], r["strategy_id"], r["side"], int(r["quantity"]), r["execution_mode"])
        for r in ledger_orders(world.urls.postgres)
        if r["strategy_id"].startswith(world.prefix)
    )
    portfolios = {
        broker: {s: {k: v for k, v in p.items() if k != "timestamp"} for s, p in accounts.items()}
        for broker, accounts in world.portfolios().items()
    }
    return orders, world.fills(), portfolios


def _forget_portfolios(world: World) -> None:
    client = redis.Redis.from_url(world.urls.redis)
    keys = [
        k for broker in ("paper", "zerodha") for k in client.scan_iter(f"{broker}:portfolio:{world.prefix}*")
    ]
    if keys:
        client.delete(*keys)
    assert world.portfolios() == {"paper": {}, "zerodha": {}}


def test_two_process_cluster_matches_one_process(world: World, second_database: str, tmp_path: Path) -> None:
    rows = world.seed()
    world.produce_ticks(simulated_ticks(instruments=10, ticks=300, seed=21))

    one = subprocess.run(
        [sys.executable, "-m", "bytewax.run", "dataflows.pipeline"],
        env=_env(world.urls, tmp_path / "one"),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    assert one.returncode == 0, one.stderr[-3000:]
    single = _outcome(world)
    assert single[0] and single[1] and single[2]["paper"], "the reference run traded"

    # The same ticks again, into a fresh ledger and an empty Redis namespace.
    _forget_portfolios(world)
    seed_strategies(second_database, rows)
    cluster_world = dataclasses.replace(world, urls=dataclasses.replace(world.urls, postgres=second_database))
    addresses = ";".join(f"127.0.0.1:{port}" for port in _free_ports(2))
    processes = []
    for ordinal in range(2):
        recovery = tmp_path / f"recovery-{ordinal}"
        env = _env(
            cluster_world.urls,
            tmp_path / f"cluster-{ordinal}",
            POD_NAME=f"pipeline-{ordinal}",
            CLUSTER_ADDRESSES=addresses,
        )
        init = subprocess.run(
            [sys.executable, "-m", "alpha_panda.cluster", "init-recovery", str(recovery)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert init.stdout == f"created recovery partition {ordinal} of 2 in {recovery}\n", init.stderr
        command = ["run", "dataflows.pipeline", "--", "-w", "1", "-r", str(recovery), "-s", "5", "-b", "0"]
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "alpha_panda.cluster", *command],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    try:
        results = [p.communicate(timeout=RUN_TIMEOUT_S) for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.wait()
    for ordinal, (p, (stdout, stderr)) in enumerate(zip(processes, results, strict=True)):
        assert p.returncode == 0, f"process {ordinal}: {stderr[-3000:]}"
        assert stdout.startswith(
            f"exec -m bytewax.run dataflows.pipeline -i {ordinal} -a {addresses} -w 1 -r "
        )

    assert _outcome(cluster_world) == single
