"""``alpha-panda walkforward``: choose parameters in sample, trade them out of sample, fold by fold.

Windows are event time. Fold ``k`` trains on ``[train_start, train_end)``
and tests on ``[train_end, train_end + test)``: rolling windows move by
``test`` each fold (``train_start = first + k·test``); anchored ones all
start at the first tick and grow (``train_end = first + train + k·test``).
Folds continue while a test window holds ticks.

Per fold: a sweep of the whole grid over the train window's ticks (one
pass, every combination its own fresh account) picks the best combination
by ``rank_by``; that combination alone then replays the test window's
ticks from a fresh account (a new warm-up, nothing carried over). The
statistics of both come from the report's code over the window.

Reported: the chosen parameters per fold, in-sample (train) against
out-of-sample (test) statistics, the degradation (P&L per day of window,
and its ratio, the walk-forward efficiency), and the stitched out-of-sample
equity: each test window's equity change, added end to end from the first
fold's starting equity.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from alpha_panda.replay import run_replay
from alpha_panda.report import ReportOptions, replay_report
from alpha_panda.sweep import Combination, SweepError, instruments_in, run_sweep, sweep_configs
from connectors.files import read_tick_batches
from dataflows.pipeline import PipelineParams
from schemas.codec import TimeCache, decode_tick_batch

DAY = timedelta(days=1)


def read_timed(ticks: Path) -> list[tuple[datetime, bytes]]:
    """Every valid tick of a JSONL or CSV file as (exchange time in UTC, JSON line), in file order."""
    times = TimeCache()
    out: list[tuple[datetime, bytes]] = []
    for batch in read_tick_batches(ticks, "walkforward"):
        decoded = decode_tick_batch(batch.values, times)
        out.extend((at, batch.values[i]) for at, i in zip(decoded.times, decoded.positions, strict=True))
    return out


def windows(
    first: datetime, last: datetime, train: timedelta, test: timedelta, *, anchored: bool
) -> list[tuple[datetime, datetime, datetime]]:
    """``(train_start, train_end, test_end)`` of every fold whose test window starts at or before ``last``."""
    if train <= timedelta(0) or test <= timedelta(0):
        msg = "walkforward: --train and --test must be positive"
        raise SweepError(msg)
    folds = []
    k = 0
    while True:
        start = first if anchored else first + k * test
        end = first + train + k * test
        if end > last:
            return folds
        folds.append((start, end, end + test))
        k += 1


def _slice(
    timed: Sequence[tuple[datetime, bytes]], start: datetime, end: datetime, path: Path
) -> datetime | None:
    lines = [line for at, line in timed if start <= at < end]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return max((at for at, _ in timed if start <= at < end), default=None)


def _window(start: datetime, end: datetime) -> dict[str, Any]:
    return {"start": start.isoformat(), "end": end.isoformat(), "days": (end - start) / DAY}


def _per_day(pnl: float, window: dict[str, Any]) -> float:
    return pnl / window["days"]


def run_walkforward(  # the command's options
    ticks: Path,
    strategy_type: str,
    grid: Mapping[str, Sequence[Any]],
    out_dir: Path,
    params: PipelineParams | None = None,
    *,
    train: timedelta,
    test: timedelta,
    anchored: bool = False,
    rank_by: str = "total_pnl",
    instruments: Sequence[int] | None = None,
    on_fold: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run every fold (see the module docstring); write and return ``walkforward.json``'s content.

    Raises:
        SweepError: no ticks, or windows longer than the file.
        ConfigError: naming a combination (unknown strategy, bad parameters).
    """
    params = replace(params or PipelineParams(), brokers=("paper",))
    timed = read_timed(ticks)
    if not timed:
        msg = f"walkforward: {ticks} holds no valid ticks"
        raise SweepError(msg)
    tokens = tuple(instruments) if instruments else instruments_in(ticks)
    first, last = min(at for at, _ in timed), max(at for at, _ in timed)
    plan = windows(first, last, train, test, anchored=anchored)
    if not plan:
        msg = f"walkforward: the ticks span {last - first}, not more than one train window of {train}"
        raise SweepError(msg)
    folds: list[dict[str, Any]] = []
    stitched: list[list[Any]] = []
    base: float | None = None
    carried = 0.0
    for number, (start, end, test_end) in enumerate(plan, start=1):
        fold_dir = out_dir / "folds" / f"{number:03d}"
        train_last = _slice(timed, start, end, fold_dir / "train.jsonl")
        test_last = _slice(timed, end, test_end, fold_dir / "test.jsonl")
        if train_last is None or test_last is None:
            continue
        swept = run_sweep(
            fold_dir / "train.jsonl",
            strategy_type,
            grid,
            fold_dir / "train",
            params,
            rank_by=rank_by,
            instruments=tokens,
            options=ReportOptions(since=start, until=train_last),
        )
        best = swept.rows[0]
        chosen = Combination(best["id"], dict(best["parameters"]))
        test_dir = fold_dir / "test"
        run_replay(fold_dir / "test.jsonl", sweep_configs(strategy_type, [chosen], tokens), test_dir, params)
        report = replay_report(test_dir, ReportOptions(since=end, until=test_last))
        account = next(a for a in report["accounts"] if a["strategy_id"] == chosen.id)
        stats = account["stats"]
        oos = {"total_pnl": stats["final_equity"] - stats["initial_equity"], **stats}
        train_window, test_window = _window(start, end), _window(end, test_end)
        if base is None:
            base = stats["initial_equity"]
        stitched.extend(
            [at, base + carried + value - stats["initial_equity"]] for at, value in account["equity"]
        )
        carried += oos["total_pnl"]
        fold = {
            "fold": number,
            "train": train_window,
            "test": test_window,
            "chosen": {"id": chosen.id, "parameters": chosen.parameters},
            "in_sample": {k: v for k, v in best.items() if k not in ("id", "parameters", "rank")},
            "out_of_sample": oos,
            "degradation": {
                "in_sample_pnl_per_day": _per_day(best["total_pnl"], train_window),
                "out_of_sample_pnl_per_day": _per_day(oos["total_pnl"], test_window),
            },
        }
        folds.append(fold)
        if on_fold is not None:
            on_fold(fold)
    if not folds:
        msg = f"walkforward: no fold of {ticks} has ticks in both its train and its test window"
        raise SweepError(msg)
    is_days = sum(f["train"]["days"] for f in folds)
    oos_days = sum(f["test"]["days"] for f in folds)
    is_per_day = sum(f["in_sample"]["total_pnl"] for f in folds) / is_days
    oos_per_day = carried / oos_days
    result = {
        "strategy_type": strategy_type,
        "rank_by": rank_by,
        "mode": "anchored" if anchored else "rolling",
        "train_seconds": train.total_seconds(),
        "test_seconds": test.total_seconds(),
        "folds": folds,
        "stitched_equity": {"initial": base, "equity": stitched},
        "summary": {
            "folds": len(folds),
            "in_sample_pnl_per_day": is_per_day,
            "out_of_sample_pnl_per_day": oos_per_day,
            "efficiency": oos_per_day / is_per_day if is_per_day else None,
            "out_of_sample_total_pnl": carried,
        },
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "walkforward.json").write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    return result
