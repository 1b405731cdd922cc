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
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
import redis

from connectors.localstack import StackUrls
from connectors.postgres import apply_migrations, seed_strategies
from tests.integration.live_world import World, live_world, simulated_ticks, wait_until
from tests.ledger_rows import ledger_orders

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


class LoopbackCluster:
    """Two pipeline processes on loopback, each started as a pod starts it (launcher, own recovery dir)."""

    def __init__(self, urls: StackUrls, base: Path, **env: str) -> None:
        self.urls = urls
        self.base = base
        self.env = env
        self.addresses = ";".join(f"127.0.0.1:{port}" for port in _free_ports(2))
        self.processes: list[subprocess.Popen[bytes]] = []

    def _env(self, ordinal: int) -> dict[str, str]:
        return _env(
            self.urls,
            self.base / f"data-{ordinal}",
            POD_NAME=f"pipeline-{ordinal}",
            CLUSTER_ADDRESSES=self.addresses,
            **self.env,
        )

    def log(self, ordinal: int) -> str:
        return (self.base / f"pipeline-{ordinal}.log").read_text(errors="replace")

    def start(self) -> list[str]:
        """Init each process's recovery partition, then start both; return what init printed."""
        printed = []
        for ordinal in range(2):
            recovery = self.base / f"recovery-{ordinal}"
            init = subprocess.run(
                [sys.executable, "-m", "alpha_panda.cluster", "init-recovery", str(recovery)],
                env=self._env(ordinal),
                capture_output=True,
                text=True,
                check=False,
            )
            assert init.returncode == 0, init.stderr
            printed.append(init.stdout)
        self.processes = []
        for ordinal in range(2):
            recovery = self.base / f"recovery-{ordinal}"
            command = [
                "run",
                "dataflows.pipeline",
                "--",
                "-w",
                "1",
                "-r",
                str(recovery),
                "-s",
                "1",
                "-b",
                "0",
            ]
            with (self.base / f"pipeline-{ordinal}.log").open("ab") as out:
                self.processes.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "alpha_panda.cluster", *command],
                        env=self._env(ordinal),
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                )
        return printed

    def wait(self, timeout_s: float = RUN_TIMEOUT_S) -> list[int]:
        return [p.wait(timeout=timeout_s) for p in self.processes]

    def kill(self) -> None:
        for p in self.processes:
            if p.poll() is None:
                p.kill()
                p.wait()


@pytest.fixture
def clusters() -> Iterator[list[LoopbackCluster]]:
    started: list[LoopbackCluster] = []
    try:
        yield started
    finally:
        for cluster in started:
            cluster.kill()


def _one_process(world: World, data_dir: Path) -> None:
    one = subprocess.run(
        [sys.executable, "-m", "bytewax.run", "dataflows.pipeline"],
        env=_env(world.urls, data_dir),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    assert one.returncode == 0, one.stderr[-3000:]


@pytest.mark.parametrize(
    "layout",
    [{}, {"INSTRUMENT_GROUPS": "3", "TRADING_SHARDS": "2"}],
    ids=["one-shard", "instrument-groups"],
)
def test_two_process_cluster_matches_one_process(
    world: World,
    second_database: str,
    tmp_path: Path,
    clusters: list[LoopbackCluster],
    layout: dict[str, str],
) -> None:
    """Also with the trading stage split by instrument group: one strategy's instruments on both processes."""
    rows = world.seed()
    world.produce_ticks(simulated_ticks(instruments=10, ticks=300, seed=21))
    _one_process(world, tmp_path / "one")
    single = _outcome(world)
    assert single[0] and single[1] and single[2]["paper"], "the reference run traded"

    # The same ticks again, into a fresh ledger and an empty Redis namespace.
    _forget_portfolios(world)
    seed_strategies(second_database, rows)
    cluster_world = dataclasses.replace(world, urls=dataclasses.replace(world.urls, postgres=second_database))
    cluster = LoopbackCluster(cluster_world.urls, tmp_path, **layout)
    clusters.append(cluster)
    assert cluster.start() == [
        f"created recovery partition {n} of 2 in {tmp_path / f'recovery-{n}'}\n" for n in range(2)
    ]
    assert cluster.wait() == [0, 0], cluster.log(0)[-3000:] + cluster.log(1)[-3000:]
    for ordinal in range(2):
        assert cluster.log(ordinal).startswith(
            f"exec -m bytewax.run dataflows.pipeline -i {ordinal} -a {cluster.addresses} -w 1 -r "
        )
    assert _outcome(cluster_world) == single


def test_cluster_resumes_from_per_process_partitions_after_a_kill(
    redis_url: str, postgres_url: str, tmp_path: Path, clusters: list[LoopbackCluster]
) -> None:
    """A pod dies mid-stream: its peer stops too, both restart on their volumes, nothing is counted twice."""
    lines = simulated_ticks(instruments=10, ticks=400, seed=13)
    with live_world(redis_url, postgres_url) as reference:
        rows = reference.seed()
        reference.produce_ticks(lines)
        _one_process(reference, tmp_path / "one")
        expected = _outcome(reference)
        assert expected[1], "the reference run traded"
        _forget_portfolios(reference)
        prefix = reference.prefix

    with live_world(redis_url, postgres_url) as fresh:
        world = dataclasses.replace(fresh, prefix=prefix)  # the same strategy ids, so the same order ids
        world.seed(rows)
        half = len(lines) // 2
        world.produce_ticks(lines[:half])
        cluster = LoopbackCluster(world.urls, tmp_path / "cluster", KAFKA_TAIL="true")
        (tmp_path / "cluster").mkdir()
        clusters.append(cluster)
        cluster.start()
        wait_until(lambda: len(world.fills()) >= 20, 60, "fills before the kill")
        time.sleep(2.5)  # a snapshot (every 1 s) lands after the first fills
        cluster.processes[1].send_signal(signal.SIGKILL)
        # Its peer cannot go on alone: it exits, so Kubernetes restarts that pod too.
        assert cluster.processes[0].wait(timeout=60) != 0
        cluster.processes[1].wait(timeout=10)
        # Each process committed epochs to its own partition: the restart resumes, it does not start over.
        for n in range(2):
            with sqlite3.connect(tmp_path / "cluster" / f"recovery-{n}" / f"part-{n}.sqlite3") as db:
                assert db.execute("SELECT count(*) FROM commits").fetchone()[0] > 0, n

        world.produce_ticks(lines[half:])
        printed = cluster.start()
        assert printed == [
            f"recovery partition {n} of 2 already in {tmp_path / 'cluster' / f'recovery-{n}'}\n"
            for n in range(2)
        ]
        wait_until(lambda: world.fills() == expected[1], 90, "the ledger to equal one uninterrupted process")
        wait_until(lambda: _outcome(world) == expected, 30, "orders and portfolios to settle")
        cluster.kill()
        _forget_portfolios(world)
