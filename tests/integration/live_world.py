"""An isolated world for live-pipeline tests: its own Kafka topics, database and ids.

Each world has a fresh Tansu broker (or, with KAFKA_BOOTSTRAP_SERVERS set,
freshly recreated pipeline topics), a fresh PostgreSQL database on the
session's server, and strategy ids unique to the test, so Redis keys and
ledger rows never collide with another test's.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
import psycopg
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from alpha_panda.localstack import LocalStack
from connectors.kafka.admin import create_pipeline_topics, create_topics
from connectors.kafka.config import producer_config
from connectors.kafka.records import consume_all, produce
from connectors.localstack import StackUrls
from connectors.postgres import apply_migrations, ledger_fills, seed_strategies
from connectors.redis_portfolio import read_portfolios
from connectors.simulator import MarketSpec, simulate_lines
from dataflows.settings import Settings
from schemas.topics import MARKET_TICKS, all_topics


@dataclass
class World:
    """URLs, a stack for dataflow processes, and the test's strategy id prefix."""

    urls: StackUrls
    stack: LocalStack
    prefix: str

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "kafka_bootstrap_servers": self.urls.kafka,
            "redis_url": self.urls.redis,
            "postgres_url": self.urls.postgres,
            "kafka_tail": False,
            "data_dir": self.stack.data_dir,
        }
        return Settings(**{**values, **overrides})

    def strategy_rows(self) -> list[dict[str, Any]]:
        """The sample strategies, ids prefixed for this test."""
        import yaml

        rows = yaml.safe_load((Path(__file__).parents[2] / "examples" / "strategies.yaml").read_text())[
            "strategies"
        ]
        return [{**row, "id": f"{self.prefix}{row['id']}"} for row in rows]

    def seed(self, rows: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        rows = rows if rows is not None else self.strategy_rows()
        seed_strategies(self.urls.postgres, rows)
        return rows

    def tick_producer(self) -> Producer:
        """A producer to pass to repeated :meth:`produce_ticks` calls.

        A new idempotent producer waits ~0.5 s for its producer id before its
        first delivery; one kept for a test's batches waits once. Not across
        a broker restart that loses the broker's producer state.
        """
        return Producer(producer_config(self.urls.kafka))

    def produce_ticks(self, lines: list[bytes], producer: Producer | None = None) -> None:
        """Produce ``lines`` to the ticks topic, keyed by instrument; ``producer`` is reused if given."""
        items = []
        for line in lines:
            try:
                key = str(orjson.loads(line)["data"]["instrument_token"]).encode()
            except Exception:  # bad lines are produced as they are
                key = None
            items.append((key, line))
        produce(self.urls.kafka, MARKET_TICKS, items, producer=producer)

    def topic(self, name: str) -> list[dict[str, Any]]:
        return [orjson.loads(r.value) for r in consume_all(self.urls.kafka, name, 15) if r.value]

    def portfolios(self) -> dict[str, dict[str, dict[str, Any]]]:
        return {
            broker: {
                k: v for k, v in read_portfolios(self.urls.redis, broker).items() if k.startswith(self.prefix)
            }
            for broker in ("paper", "zerodha")
        }

    def fills(self) -> set[tuple[str, str, float, int]]:
        return {
            (row["broker"], row["order_id"], float(row["fill_price"]), int(row["quantity"]))
            for row in ledger_fills(self.urls.postgres)
            if row["strategy_id"].startswith(self.prefix)
        }


def simulated_ticks(instruments: int = 10, ticks: int = 300, seed: int = 5) -> list[bytes]:
    spec = MarketSpec(instruments=instruments, ticks_per_instrument=ticks, seed=seed)
    return [line.rstrip(b"\n") for line in simulate_lines(spec)]


def _database_url(server_url: str, name: str) -> str:
    parts = urlsplit(server_url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@contextmanager
def live_world(redis_url: str, postgres_url: str, kafka_url: str | None = None) -> Iterator[World]:
    """Yield an isolated :class:`World`; its Tansu and database go away afterwards.

    ``kafka_url`` (else ``KAFKA_BOOTSTRAP_SERVERS``) is an external broker,
    whose topics are recreated.
    """
    name = f"ap_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    database = _database_url(postgres_url, name)
    apply_migrations(database)
    data_dir = Path(tempfile.mkdtemp(prefix="alpha-panda-world-"))
    stack = LocalStack(data_dir)
    external_kafka = kafka_url or os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    try:
        urls = stack.up(kafka_url=external_kafka, redis_url=redis_url, postgres_url=database)
        if external_kafka:
            AdminClient({"bootstrap.servers": external_kafka}).delete_topics(all_topics())
            time.sleep(2)
        # One partition for ticks: "the same ticks" means the same order. Every
        # other topic has four, so per-account partitioning is exercised too.
        create_topics(urls.kafka, [MARKET_TICKS], partitions=1, retention_ms=3_600_000)
        create_pipeline_topics(urls.kafka, partitions=4, retention_ms=3_600_000)
        yield World(urls, stack, f"t{uuid.uuid4().hex[:6]}_")
    finally:
        for process in ("pipeline", "strategy_runner", "risk_manager", "trading_engine", "portfolio_manager"):
            stack.stop_process(process)
        stack.down()
        shutil.rmtree(data_dir, ignore_errors=True)
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str, every_s: float = 0.5) -> None:
    """Poll ``condition`` until true; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(every_s)
    msg = f"timed out after {timeout_s:.0f} s waiting for {what}"
    raise AssertionError(msg)
