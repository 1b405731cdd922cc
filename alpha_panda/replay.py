"""``alpha-panda replay``: run the whole pipeline over a tick file, no servers.

Writes ``out/<topic>.jsonl`` for every topic that received messages and
``out/portfolio.json`` (the last P&L snapshot of every account, fresh
accounts included), and returns a :class:`ReplaySummary`.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from bytewax.testing import run_main

from alpha_panda.outdir import check_out_dir, clear_previous_outputs
from connectors.files import OutputCounts
from dataflows.pipeline import PipelineParams, replay_flow
from dataflows.runtime.collector import tune_collector
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


def run_replay(
    ticks: Path,
    configs: Sequence[StrategyConfig],
    out_dir: Path,
    params: PipelineParams | None = None,
    *,
    on_progress: Any = None,
    keep_topics: Collection[str] | None = None,
) -> ReplaySummary:
    """Replay ``ticks`` through every stage; write the outputs; summarise them.

    The summary comes from counts the sink kept while writing: nothing is
    read back, so memory stays flat in the length of the file.
    ``keep_topics`` (a sweep's): write and count only those topics.
    """
    params = params or PipelineParams()
    check_out_dir(ticks, out_dir)
    clear_previous_outputs(out_dir)  # a previous replay's files only, never anything else
    out_dir.mkdir(parents=True, exist_ok=True)
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
