"""``alpha-panda replay``: run the whole pipeline over a tick file, no servers.

Writes ``out/<topic>.jsonl`` for every topic that received messages and
``out/portfolio.json`` (the last P&L snapshot of every account, fresh
accounts included), and returns a :class:`ReplaySummary`.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from bytewax.testing import run_main

from dataflows.pipeline import PipelineParams, replay_flow
from operators.portfolio import Portfolio
from operators.strategy import StrategyConfig
from schemas.codec import to_builtins
from schemas.topics import (
    MARKET_TICKS,
    ORDERS_FILLED,
    PNL_SNAPSHOTS,
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


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    with path.open("rb") as handle:
        return [orjson.loads(line) for line in handle if line.strip()]


def _count_lines(path: Path) -> int:
    with path.open("rb") as handle:
        count = sum(1 for line in handle if line.strip())
    return count - 1 if path.suffix.lower() == ".csv" else count


def run_replay(
    ticks: Path,
    configs: Sequence[StrategyConfig],
    out_dir: Path,
    params: PipelineParams | None = None,
    *,
    on_progress: Any = None,
) -> ReplaySummary:
    """Replay ``ticks`` through every stage; write the outputs; summarise them."""
    params = params or PipelineParams()
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob("*.jsonl"):
        stale.unlink()
    run_main(replay_flow(ticks, configs, out_dir, params, on_progress=on_progress))

    lines = _count_lines(ticks)
    dead = len(_read_jsonl(out_dir / f"{dlq_topic(MARKET_TICKS)}.jsonl"))
    summary = ReplaySummary(lines=lines, ticks=lines - dead, dead_letters=dead)
    summary.topic_counts = {
        p.name[: -len(".jsonl")]: _count_lines(p) for p in sorted(out_dir.glob("*.jsonl"))
    }

    portfolio = Portfolio(params.portfolio)
    portfolios: dict[str, dict[str, Any]] = {broker: {} for broker in params.brokers}
    for broker in params.brokers:
        for config in configs:
            if not config.is_active or broker not in config.brokers(params.brokers):
                continue
            account = summary.accounts.setdefault((broker, config.id), AccountSummary())
            fresh = portfolio.snapshot(
                portfolio.new_state(),
                strategy_id=config.id,
                broker=broker,
                timestamp=datetime(1970, 1, 1, tzinfo=UTC),
            )
            portfolios[broker][config.id] = to_builtins(fresh)  # type: ignore[arg-type]
        counters = {
            "signals": (SIGNALS_RAW, "strategy_id"),
            "validated": (SIGNALS_VALIDATED, None),
            "rejected": (SIGNALS_REJECTED, None),
            "fills": (ORDERS_FILLED, "strategy_id"),
        }
        for attr, (stage, field_name) in counters.items():
            counts: Counter[str] = Counter()
            for message in _read_jsonl(out_dir / f"{broker_topic(broker, stage)}.jsonl"):
                data = message["data"]
                counts[data[field_name] if field_name else data["original_signal"]["strategy_id"]] += 1
            for strategy_id, count in counts.items():
                setattr(summary.accounts.setdefault((broker, strategy_id), AccountSummary()), attr, count)
        last: dict[str, dict[str, Any]] = defaultdict(dict)
        for message in _read_jsonl(out_dir / f"{broker_topic(broker, PNL_SNAPSHOTS)}.jsonl"):
            last[message["data"]["strategy_id"]] = message["data"]
        for strategy_id, snapshot in last.items():
            portfolios[broker][strategy_id] = snapshot
        for strategy_id, snapshot in portfolios[broker].items():
            account = summary.accounts.setdefault((broker, strategy_id), AccountSummary())
            account.realized_pnl = snapshot["realized_pnl"]
            account.unrealized_pnl = snapshot["unrealized_pnl"]
            account.total_pnl = snapshot["total_pnl"]
            account.fees_paid = snapshot["fees_paid"]
    (out_dir / "portfolio.json").write_bytes(
        orjson.dumps(portfolios, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
    )
    return summary
