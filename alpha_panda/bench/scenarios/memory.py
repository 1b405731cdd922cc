"""The ``memory`` scenario: recoverable state per (strategy, instrument), as recovery stores it.

The pipeline runs with Bytewax recovery on and one epoch spanning the whole
run, so each key of the ``trading`` step is snapshotted once, at the end;
the stored pickles are :class:`operators.shard.ShardState` (with the shard's
index). Their bytes are split into the instruments part (strategy windows,
tick identity, latest price) and the accounts part (risk and books of every
strategy x broker), each divided by the (strategy, instrument) pairs.
"""

from __future__ import annotations

import pickle
import sqlite3
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import run_main

from alpha_panda.bench.config import BenchConfig
from alpha_panda.bench.harness import STRATEGIES_PER_INSTRUMENT, CountingSink, Market, market, pipeline_flow
from alpha_panda.bench.machine import rss
from alpha_panda.bench.scenarios import Log
from operators.shard import ShardState


def stored_snapshots(db_dir: Path) -> dict[str, list[bytes]]:
    """Latest pickled snapshot of every (step, key) in a recovery directory, by step id."""
    latest: dict[tuple[str, str], tuple[int, bytes]] = {}
    for part in sorted(db_dir.glob("*.sqlite3")):
        with sqlite3.connect(part) as db:
            query = "SELECT step_id, state_key, snap_epoch, ser_change FROM snaps"
            for step, key, epoch, blob in db.execute(query):
                if blob is not None and ((step, key) not in latest or epoch > latest[step, key][0]):
                    latest[step, key] = (epoch, blob)
    by_step: dict[str, list[bytes]] = {}
    for (step, _key), (_epoch, blob) in latest.items():
        by_step.setdefault(step, []).append(blob)
    return by_step


def shard_states(db_dir: Path) -> list[tuple[int, ShardState]]:
    """``(pickled bytes, ShardState)`` of every key the ``trading`` step stored (its shards)."""
    found: list[tuple[int, ShardState]] = []
    for step, blobs in stored_snapshots(db_dir).items():
        if ".trading" not in step:  # e.g. "bench_pipeline.trading.stateful_batch"
            continue
        for blob in blobs:
            _shard_index, state = pickle.loads(blob)  # noqa: S301 - our own recovery store, just written
            found.append((len(blob), state))
    return found


def measure_state(ticks: Market) -> dict[str, Any]:
    """Replay ``ticks`` with recovery on; return the pickled state sizes (bytes) Bytewax stored."""
    with tempfile.TemporaryDirectory(prefix="alpha-panda-bench-") as tmp:
        db_dir = Path(tmp)
        init_db_dir(db_dir, 1)
        flow = pipeline_flow(ticks.batches(), ticks.spec.tokens(), CountingSink(), recoverable=True)
        run_main(flow, epoch_interval=timedelta(days=1), recovery_config=RecoveryConfig(str(db_dir)))
        states = shard_states(db_dir)
    stored = sum(size for size, _state in states)
    instruments_bytes = sum(len(pickle.dumps(state.instruments)) for _size, state in states)
    accounts_bytes = sum(len(pickle.dumps(state.accounts)) for _size, state in states)
    pairs = STRATEGIES_PER_INSTRUMENT * ticks.spec.instruments
    return {
        "shard_keys": len(states),
        "state_bytes": stored,
        "instruments_in_state": sum(len(state.instruments) for _size, state in states),
        "accounts_in_state": sum(len(state.accounts) for _size, state in states),
        "account_names": sorted(name for _size, state in states for name in state.accounts),
        "instruments_part_bytes": instruments_bytes,
        "accounts_part_bytes": accounts_bytes,
        "strategy_instrument_pairs": pairs,
        "instrument_bytes_per_pair": instruments_bytes / pairs,
        "account_bytes_per_pair": accounts_bytes / pairs,
        "bytes_per_pair": stored / pairs,
    }


def memory_scenario(config: BenchConfig, log: Log) -> list[dict[str, Any]]:
    """State bytes per (strategy, instrument) and RSS, per instrument count."""
    rows = []
    for instruments in config.instruments:
        ticks = market(instruments, config.ticks)
        log(f"memory: {instruments:,} instruments, {ticks.ticks:,} ticks (recovery on)")
        before = rss()["rss_bytes"]
        row = {"instruments": instruments, "ticks": ticks.ticks, **measure_state(ticks)}
        after = rss()
        row.update(after, rss_growth_bytes=after["rss_bytes"] - before)
        rows.append(row)
    return rows
