"""Helpers for flow tests: tick files and runs under one and two workers."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import cluster_main, run_main

IST = timezone(timedelta(hours=5, minutes=30))
START = datetime(2024, 1, 2, 9, 15, tzinfo=IST)


def tick_line(token: int, price: float, second: int) -> bytes:
    when = (START + timedelta(seconds=second)).isoformat()
    return orjson.dumps(
        {"type": "market_tick", "data": {"instrument_token": token, "last_price": price, "timestamp": when}}
    )


def write_lines(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


MOMENTUM_ONLY = """
strategies:
  - id: mom
    strategy_type: momentum
    instruments: [256265]
    parameters: {lookback_period: 20, momentum_threshold: 0.01, position_size: 100}
    is_active: true
    zerodha_trading_enabled: false
"""


def run_with_workers(flow: Dataflow, workers: int) -> None:
    """Run ``flow`` with ``workers`` worker threads in this process (0 = run_main)."""
    if workers == 0:
        run_main(flow)
    else:
        cluster_main(flow, [], 0, worker_count_per_proc=workers)


@pytest.fixture(params=[0, 1, 2], ids=["run_main", "1-worker", "2-workers"])
def runner(request: pytest.FixtureRequest) -> Callable[[Dataflow], None]:
    return lambda flow: run_with_workers(flow, request.param)
