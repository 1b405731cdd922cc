"""Redis portfolio sink against a real Redis."""

from __future__ import annotations

import orjson
import pytest
from bytewax import operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource, run_main

from connectors.errors import SinkInputError
from connectors.redis_portfolio import (
    RedisPortfolioSink,
    latest_snapshots,
    portfolio_key,
    read_portfolios,
    redis_client,
)
from schemas.codec import to_builtins
from tests.integration.builders import pnl_out, tick_out

pytestmark = pytest.mark.integration


def _run(items: list, url: str, batch_size: int = 10) -> None:
    flow = Dataflow("redis_portfolio")
    stream = op.input("in", flow, TestingSource(items, batch_size=batch_size))
    op.output("redis", stream, RedisPortfolioSink(url))
    run_main(flow)


def test_latest_snapshot_per_key_wins_and_brokers_stay_apart(redis_url: str, unique: str) -> None:
    strategy = f"mom_{unique}"
    items = [
        pnl_out("paper", strategy, 990_000.0, 1),
        pnl_out("zerodha", strategy, 500_000.0, 1),
        pnl_out("paper", strategy, 980_000.0, 2),  # same key, same batch: this one must win
    ]
    assert len(latest_snapshots(items)) == 2  # one SET per key in the pipeline
    _run(items, redis_url)

    paper = read_portfolios(redis_url, "paper")
    zerodha = read_portfolios(redis_url, "zerodha")
    assert paper[strategy] == to_builtins(items[2].envelope)["data"]
    assert paper[strategy]["cash"] == 980_000.0
    assert zerodha[strategy]["cash"] == 500_000.0
    assert zerodha[strategy]["broker"] == "zerodha"

    client = redis_client(redis_url)
    raw = client.get(portfolio_key("paper", strategy))
    assert orjson.loads(raw)["strategy_id"] == strategy
    client.close()


def test_later_batches_overwrite_earlier_ones(redis_url: str, unique: str) -> None:
    strategy = f"mr_{unique}"
    items = [pnl_out("paper", strategy, 1_000_000.0 - i, i) for i in range(7)]
    _run(items, redis_url, batch_size=2)
    assert read_portfolios(redis_url, "paper")[strategy]["cash"] == 1_000_000.0 - 6


def test_only_pnl_snapshots_are_accepted() -> None:
    with pytest.raises(SinkInputError, match="PnlEnvelope"):
        latest_snapshots([tick_out(1, 100.0)])
