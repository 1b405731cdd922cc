"""``alpha-panda replay``: run the whole pipeline over a tick file, no servers.

Writes ``out/<topic>.jsonl`` for every topic that received messages and
``out/portfolio.json`` (the last P&L snapshot of every account, fresh
accounts included), and returns a :class:`ReplaySummary`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import orjson
from bytewax.dataflow import Dataflow
from bytewax.testing import run_main

from alpha_panda.outdir import check_out_dir, clear_previous_outputs
from alpha_panda.two_processes import can_fork, run_on_two_processes
from connectors.files import OutputCounts
from dataflows.pipeline import PipelineParams, replay_flow
from dataflows.runtime.backlog import Backlog
from dataflows.runtime.collector import tune_collector
from operators.errors import ConfigError
from operators.portfolio import Portfolio
from operators.strategy import StrategyConfig
from schemas.codec import to_builtins
from schemas.topics import (
    MARKET_TICKS,
    ORDERS_FILLED,
    SIGNALS_RAW,
    SIGNALS_REJECTED,
    SIGNALS_VALIDATED,
    broker_topic,
    dlq_topic,
)


@dataclass
class AccountSummary:
    """Counts and P&L of one strategy at one broker."""

    signals: int = 0
    validated: int = 0
    rejected: int = 0
    fills: int = 0
    realized_pnl: float = 0.0
    unrealized_pnl: float = 0.0
    total_pnl: float = 0.0
    fees_paid: float = 0.0


@dataclass
class ReplaySummary:
    """What a replay read and produced."""

    lines: int
    ticks: int
    dead_letters: int
    accounts: dict[tuple[str, str], AccountSummary] = field(default_factory=dict)
    topic_counts: dict[str, int] = field(default_factory=dict)


AUTO_TWO_PROCESSES_BYTES: Final = 8 << 20
"""Tick files from this size up replay on two processes by default (where the machine has two cores)."""


def auto_processes(ticks: Path, params: PipelineParams) -> int:
    """The processes ``replay`` uses unless told: 2 for a big file on a machine that can, else 1.

    Two need two cores, a fork without other threads alive, the plain
    layout (one shard, one instrument group) and a file big enough for the
    second process to pay for itself.
    """
    if (os.cpu_count() or 1) < 2 or not can_fork() or not params.one_shard:
        return 1
    return 2 if ticks.stat().st_size >= AUTO_TWO_PROCESSES_BYTES else 1


def run_replay(
    ticks: Path,
    configs: Sequence[StrategyConfig],
    out_dir: Path,
    params: PipelineParams | None = None,
    *,
    on_progress: Any = None,
    keep_topics: Collection[str] | None = None,
    processes: int = 1,
) -> ReplaySummary:
    """Replay ``ticks`` through every stage; write the outputs; summarise them.

    The summary comes from counts the sink kept while writing: nothing is
    read back, so memory stays flat in the length of the file.
    ``keep_topics`` (a sweep's): write and count only those topics.
    ``processes`` 2: the accounts run on a second process
    (:mod:`alpha_panda.two_processes`); the files and the summary are the
    same as with 1.

    Raises:
        ConfigError: ``processes`` other than 1 or 2, or 2 with a layout
            it cannot run (instrument groups, several shards, kept topics).
    """
    params = params or PipelineParams()
    check_out_dir(ticks, out_dir)
    clear_previous_outputs(out_dir)  # a previous replay's files only, never anything else
    out_dir.mkdir(parents=True, exist_ok=True)
    if processes == 2:
        if keep_topics is not None or not params.one_shard:
            msg = "replay --processes 2 runs one trading shard and one instrument group, every topic kept"
            raise ConfigError(msg)
        apart = dataclasses.replace(params, accounts_apart=True)
        backlog = Backlog()  # before the fork: both processes count in it

        def build() -> tuple[Dataflow, OutputCounts]:
            built = OutputCounts()
            flow = replay_flow(
                ticks, configs, out_dir, apart, on_progress=on_progress, counts=built, backlog=backlog
            )
            return flow, built

        counts = run_on_two_processes(build)
    elif processes == 1:
        counts = OutputCounts()
        if keep_topics is None:
            flow = replay_flow(ticks, configs, out_dir, params, on_progress=on_progress, counts=counts)
        else:
            from dataflows.sweep import kept_replay_flow  # only sweeps use it

            flow = kept_replay_flow(
                ticks, configs, out_dir, params, keep_topics, on_progress=on_progress, counts=counts
            )
        tune_collector()
        run_main(flow)
    else:
        msg = f"replay: processes must be 1 or 2, got {processes}"
        raise ConfigError(msg)

    topic_counts = counts.topic_counts()
    dead = topic_counts.get(dlq_topic(MARKET_TICKS), 0)
    total = counts.lines_read
    summary = ReplaySummary(lines=total, ticks=total - dead, dead_letters=dead)
    summary.topic_counts = dict(sorted(topic_counts.items()))

    portfolio = Portfolio(params.portfolio)
    portfolios: dict[str, dict[str, Any]] = {broker: {} for broker in params.brokers}
    stages = {
        "signals": SIGNALS_RAW,
        "validated": SIGNALS_VALIDATED,
        "rejected": SIGNALS_REJECTED,
        "fills": ORDERS_FILLED,
    }
    for broker in params.brokers:
        for config in configs:
            if not config.is_active or broker not in config.brokers(params.brokers):
                continue
            account = summary.accounts.setdefault((broker, config.id), AccountSummary())
            for attr, stage in stages.items():
                setattr(account, attr, counts.messages.get((broker_topic(broker, stage), config.id), 0))
            snapshot = counts.last_snapshots.get((broker, config.id))
            if snapshot is None:
                snapshot = portfolio.snapshot(
                    portfolio.new_state(),
                    strategy_id=config.id,
                    broker=broker,
                    timestamp=datetime(1970, 1, 1, tzinfo=UTC),
                )
            data = to_builtins(snapshot)  # type: ignore[arg-type]
            portfolios[broker][config.id] = data
            account.realized_pnl = data["realized_pnl"]
            account.unrealized_pnl = data["unrealized_pnl"]
            account.total_pnl = data["total_pnl"]
            account.fees_paid = data["fees_paid"]
    (out_dir / "portfolio.json").write_bytes(
        orjson.dumps(portfolios, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
    )
    return summary
