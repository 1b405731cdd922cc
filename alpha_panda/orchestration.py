"""Running Alpha Panda on the local stack: bootstrap, dataflow processes, demo.

The CLI calls these; servers themselves are :mod:`alpha_panda.localstack`'s.
Each dataflow runs as ``python -m bytewax.run dataflows.<name>`` with Bytewax
recovery under ``DATA_DIR/recovery/<name>``, so a killed process resumes
from its last snapshot and its Kafka offsets.
"""

from __future__ import annotations

import pickle  # reads our own Bytewax recovery snapshots only
import sqlite3
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from alpha_panda.localstack import LocalStack, ManagedProcess
from connectors.kafka.admin import create_pipeline_topics
from connectors.kafka.config import consumer_config
from connectors.localstack import StackUrls
from connectors.postgres import apply_migrations, ledger_counts, seed_strategies
from connectors.redis_portfolio import read_portfolios
from connectors.simulator import MarketSpec
from dataflows.settings import Settings
from schemas.topics import MARKET_TICKS, ORDERS_FILLED, SIGNALS_RAW, all_topics, broker_topic

DATAFLOW_SETS: dict[str, tuple[str, ...]] = {
    "all-in-one": ("pipeline",),
    "per-stage": ("strategy_runner", "risk_manager", "trading_engine", "portfolio_manager"),
}
ZERODHA_UPDATES = "zerodha_updates"
"""The Kite order-update follower (postbacks, polled order book), started only for live Zerodha orders."""
ALL_DATAFLOWS = ("market_feed", *DATAFLOW_SETS["all-in-one"], *DATAFLOW_SETS["per-stage"], ZERODHA_UPDATES)
SNAPSHOT_INTERVAL_S = 5
"""Bytewax epoch = snapshot interval. Each epoch close drains the whole flow
(~0.3 s here), so 1 s epochs put a 270 ms p95 on tick-to-fill and 5 s epochs
27 ms; a restart then replays at most ~5 s of input, whose effects are
idempotent (deterministic ids, deduplicating ledger, risk and books)."""


def bootstrap(urls: StackUrls, settings: Settings, strategy_rows: Sequence[dict[str, Any]] = ()) -> list[str]:
    """Create every topic, apply migrations, seed strategies; return the migrations applied."""
    create_pipeline_topics(
        urls.kafka,
        settings.active_brokers,
        partitions=settings.topic_partitions,
        retention_ms=settings.topic_retention_ms,
    )
    applied = apply_migrations(urls.postgres)
    if strategy_rows:
        seed_strategies(urls.postgres, list(strategy_rows))
    return applied


def dataflows_for(flows: Sequence[str], settings: Settings) -> tuple[str, ...]:
    """The dataflows ``up`` starts for a mode's ``flows``.

    With live Zerodha orders configured (``KITE_API_KEY``, an access token
    and ``ZERODHA_LIVE_TRADING=true``), ``zerodha_updates`` too: without it,
    Kite's fills and rejections would never reach the books or risk.
    """
    if settings.zerodha_live and ZERODHA_UPDATES not in flows:
        return (*flows, ZERODHA_UPDATES)
    return tuple(flows)


def settings_env_names() -> tuple[str, ...]:
    """Environment variables a dataflow may read: the fields of :class:`Settings` (``FEED_*`` included)."""
    return tuple(sorted(name.upper() for name in Settings.model_fields))


def server_env(urls: StackUrls) -> dict[str, str]:
    """Environment that points a dataflow process at the stack's servers."""
    return {"KAFKA_BOOTSTRAP_SERVERS": urls.kafka, "REDIS_URL": urls.redis, "POSTGRES_URL": urls.postgres}


def recovery_dir(stack: LocalStack, name: str) -> Path:
    """Where dataflow ``name`` keeps its Bytewax recovery partitions."""
    return stack.data_dir / "recovery" / name


def start_dataflow(
    stack: LocalStack,
    name: str,
    urls: StackUrls,
    *,
    env: dict[str, str] | None = None,
    workers: int = 1,
    recovery: bool = True,
    snapshot_s: int = SNAPSHOT_INTERVAL_S,
) -> ManagedProcess:
    """Start ``dataflows.<name>`` as a detached process logging to ``logs/<name>.log``."""
    argv = [sys.executable, "-m", "bytewax.run", f"dataflows.{name}", "-w", str(workers)]
    if recovery:
        directory = recovery_dir(stack, name)
        if not directory.exists():
            directory.mkdir(parents=True)
            subprocess.run(
                [sys.executable, "-m", "bytewax.recovery", str(directory), "1"],
                check=True,
                capture_output=True,
            )
        argv += ["-r", str(directory), "-s", str(snapshot_s), "-b", str(2 * snapshot_s)]
    # Only the basics and the settings' own variables go through; ``env`` wins.
    return stack.start_process(name, argv, {**server_env(urls), **(env or {})}, inherit=settings_env_names())


def simulated_feed_env(rate: float, instruments: int, limit: int) -> dict[str, str]:
    """Environment of a ``market_feed`` process simulating ``instruments`` at ``rate`` ticks/s."""
    return {
        "FEED_SOURCE": "simulator",  # whatever the caller's environment says
        "FEED_RATE": str(rate),
        "FEED_INSTRUMENTS": str(instruments),
        "FEED_LIMIT": str(limit),
    }


def stop_dataflows(stack: LocalStack) -> list[str]:
    """Stop every dataflow process the stack started; return their names."""
    return [name for name in ALL_DATAFLOWS if stack.stop_process(name)]


def demo_strategy_rows(tokens: Sequence[int]) -> list[dict[str, Any]]:
    """Strategies for a simulated market: two trade on both brokers, one on paper only."""
    half = len(tokens) // 2 or 1
    return [
        {
            "id": "momentum_fast",
            "strategy_type": "momentum",
            "instruments": list(tokens),
            "parameters": {"lookback_period": 10, "momentum_threshold": 0.006, "position_size": 50},
            "is_active": True,
            "zerodha_trading_enabled": True,
        },
        {
            "id": "mean_reversion",
            "strategy_type": "mean_reversion",
            "instruments": list(tokens),
            "parameters": {},
            "is_active": True,
            "zerodha_trading_enabled": True,
        },
        {
            "id": "momentum_slow",
            "strategy_type": "momentum",
            "instruments": list(tokens[:half]),
            "parameters": {"lookback_period": 30, "momentum_threshold": 0.01},
            "is_active": True,
            "zerodha_trading_enabled": False,
        },
    ]


def demo_tokens(instruments: int) -> list[int]:
    """The instrument tokens the simulator uses for ``instruments`` instruments."""
    return MarketSpec(instruments=instruments).tokens()


# --- inspection -------------------------------------------------------------------


def _log_ends(
    consumer: Consumer, partitions: list[TopicPartition], timeout_s: float
) -> dict[tuple[str, int], int]:
    """Exact log-end offset of each partition.

    A Kafka high watermark is the log end. Tansu reports the start of the
    last record batch + 1 instead, so read from ``watermark - 1`` and take the
    highest offset seen: one message on Kafka, one batch on Tansu.
    """
    ends: dict[tuple[str, int], int] = {}
    probe: list[TopicPartition] = []
    for tp in partitions:
        high = consumer.get_watermark_offsets(tp, timeout=timeout_s)[1]
        ends[(tp.topic, tp.partition)] = high
        if high > 0:
            probe.append(TopicPartition(tp.topic, tp.partition, high - 1))
    if probe:
        consumer.assign(probe)
        quiet_until = time.monotonic() + 0.5
        while time.monotonic() < quiet_until:
            messages = consumer.consume(10_000, 0.1)
            for message in messages:
                topic, partition, offset = message.topic(), message.partition(), message.offset()
                if message.error() is None and None not in (topic, partition, offset):
                    key = (str(topic), int(partition or 0))
                    ends[key] = max(ends[key], int(offset or 0) + 1)
            if messages:
                quiet_until = time.monotonic() + 0.2
        consumer.unassign()
    return ends


def _consumer(bootstrap: str) -> Consumer:
    return Consumer(
        {**consumer_config(bootstrap), "group.id": "alpha-panda-status", "enable.auto.commit": False}
    )


def end_offsets(bootstrap: str, topics: Sequence[str], timeout_s: float = 5.0) -> dict[str, int]:
    """Messages in each topic (sum of partition log ends); missing topics are omitted."""
    consumer = _consumer(bootstrap)
    try:
        metadata = consumer.list_topics(timeout=timeout_s)
        partitions = [
            TopicPartition(topic, p)
            for topic in topics
            if (info := metadata.topics.get(topic)) is not None and info.error is None
            for p in info.partitions
        ]
        totals: dict[str, int] = {}
        for (topic, _partition), end in _log_ends(consumer, partitions, timeout_s).items():
            totals[topic] = totals.get(topic, 0) + end
        return totals
    finally:
        consumer.close()


def recovered_offsets(directory: Path) -> dict[tuple[str, int], int]:
    """Kafka positions a dataflow last snapshotted, by (topic, partition)."""
    positions: dict[tuple[str, int], int] = {}
    for part in sorted(directory.glob("part-*.sqlite3")):
        with sqlite3.connect(f"file:{part}?mode=ro", uri=True) as db:
            rows = db.execute(
                "SELECT state_key, ser_change FROM snaps s WHERE snap_epoch = (SELECT MAX(snap_epoch) "
                "FROM snaps t WHERE t.step_id = s.step_id AND t.state_key = s.state_key)"
            ).fetchall()
        for key, blob in rows:
            partition, _, topic = key.partition("-")
            if blob is None or not partition.isdigit():
                continue
            value = pickle.loads(blob)  # noqa: S301 - our own recovery store
            if isinstance(value, int):
                positions[(topic, int(partition))] = value
    return positions


def partition_lag(stack: LocalStack, urls: StackUrls, name: str) -> dict[tuple[str, int], int]:
    """Per input (topic, partition) of dataflow ``name``: log end minus its last snapshotted position."""
    positions = recovered_offsets(recovery_dir(stack, name))
    consumer = _consumer(urls.kafka)
    try:
        ends = _log_ends(consumer, [TopicPartition(t, p) for t, p in positions], 5.0)
    finally:
        consumer.close()
    # A partition never read keeps librdkafka's sentinel (-2 beginning,
    # -1 end): it has consumed nothing, i.e. it stands at offset 0.
    return {key: max(0, ends[key] - max(position, 0)) for key, position in positions.items()}


def consumer_lag(stack: LocalStack, urls: StackUrls, name: str) -> dict[str, int]:
    """Per input topic of dataflow ``name``: log end minus its last snapshotted position."""
    lag: dict[str, int] = {}
    for (topic, _partition), behind in partition_lag(stack, urls, name).items():
        lag[topic] = lag.get(topic, 0) + behind
    return lag


@dataclass
class Progress:
    """What the live pipeline has done so far, per broker."""

    ticks: int = 0
    dead_letters: int = 0
    signals: dict[str, int] = field(default_factory=dict)
    fills_published: dict[str, int] = field(default_factory=dict)
    ledger: dict[str, dict[str, int]] = field(default_factory=dict)
    pnl: dict[str, float] = field(default_factory=dict)
    accounts: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)


def read_progress(urls: StackUrls, brokers: Sequence[str]) -> Progress:
    """Read progress from Kafka end offsets, the Postgres ledger and Redis portfolios."""
    topics = [MARKET_TICKS, f"{MARKET_TICKS}.dlq"]
    topics += [broker_topic(b, s) for b in brokers for s in (SIGNALS_RAW, ORDERS_FILLED)]
    offsets = end_offsets(urls.kafka, topics)
    progress = Progress(
        ticks=offsets.get(MARKET_TICKS, 0), dead_letters=offsets.get(f"{MARKET_TICKS}.dlq", 0)
    )
    for broker in brokers:
        progress.signals[broker] = offsets.get(broker_topic(broker, SIGNALS_RAW), 0)
        progress.fills_published[broker] = offsets.get(broker_topic(broker, ORDERS_FILLED), 0)
        progress.ledger[broker] = ledger_counts(urls.postgres, broker)
        accounts = read_portfolios(urls.redis, broker)
        progress.accounts[broker] = accounts
        progress.pnl[broker] = sum(float(a.get("total_pnl", 0.0)) for a in accounts.values())
    return progress


def topics_for(brokers: Sequence[str]) -> list[str]:
    """Every topic of ``brokers`` (for status listings)."""
    return all_topics(tuple(brokers))
