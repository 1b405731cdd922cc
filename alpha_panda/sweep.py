"""``alpha-panda sweep``: every combination of a parameter grid, each its own account, in one pass.

A grid file (YAML) maps each parameter of the strategy to its values::

    lookback_period: [10, 20, 30]                              # a list
    momentum_threshold: {from: 0.005, to: 0.02, step: 0.005}   # a range, both ends included
    position_size: 100                                         # one value

Every combination becomes a :class:`StrategyConfig` of its own
(``<strategy>-<n>``, paper broker only) and all of them run in **one**
replay over the tick file: the file is read and decoded once, and each tick
goes to every combination trading its instrument. Each combination's
statistics come from the report's code (:func:`alpha_panda.report.replay_report`)
over that replay's outputs, so a sweep row and a report of the same account
agree.
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import orjson
import yaml

from alpha_panda.replay import run_replay
from alpha_panda.report import ReportOptions, replay_report
from dataflows.pipeline import PipelineParams
from operators.errors import ConfigError
from operators.strategy import StrategyConfig
from schemas.codec import TimeCache, decode_tick_batch
from schemas.errors import AlphaPandaError
from schemas.topics import MARKET_TICKS, ORDERS_FILLED, PNL_SNAPSHOTS, broker_topic, dlq_topic

RANK_BY: Final = ("total_pnl", "sharpe", "max_drawdown")
"""Metrics a sweep can rank by: the higher the better, except max_drawdown (the smaller)."""

_MAX_COMBINATIONS: Final = 10_000

SWEEP_TOPICS: Final = (
    broker_topic("paper", ORDERS_FILLED),
    broker_topic("paper", PNL_SNAPSHOTS),
    dlq_topic(MARKET_TICKS),
)
"""What a sweep writes: what the statistics read (fills, snapshots) and the tick dead letters."""


class SweepError(AlphaPandaError):
    """A bad grid, metric or tick file for a sweep (the message names it)."""


@dataclass(frozen=True)
class Combination:
    """One point of the grid: its account id and its parameters."""

    id: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class SweepResult:
    """Every combination's statistics (the report's ``stats``), best first by ``rank_by``."""

    strategy_type: str
    rank_by: str
    rows: list[dict[str, Any]]
    ticks: int


def _range(name: str, spec: Mapping[str, Any]) -> list[Any]:
    unknown = set(spec) - {"from", "to", "step"}
    if unknown or not {"from", "to"} <= set(spec):
        msg = f"grid: {name} must be a list, a value, or {{from, to, step}}, got {dict(spec)!r}"
        raise SweepError(msg)
    start, stop, step = spec["from"], spec["to"], spec.get("step", 1)
    numbers = (start, stop, step)
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in numbers) or step <= 0:
        msg = f"grid: {name} range needs numbers from <= to and step > 0, got {dict(spec)!r}"
        raise SweepError(msg)
    if all(isinstance(v, int) for v in numbers):
        return list(range(start, stop + 1, step))
    # Decimal steps, so 0.005 + 0.005 + 0.005 is 0.015 and `to` is included exactly.
    values, at, end, by = [], Decimal(repr(start)), Decimal(repr(stop)), Decimal(repr(step))
    while at <= end:
        values.append(float(at))
        at += by
    return values


def parse_grid(loaded: object) -> dict[str, list[Any]]:
    """Return each parameter's values, in the grid's order (see the module docstring).

    Raises:
        SweepError: not a mapping, an empty list, or a bad range.
    """
    if not isinstance(loaded, Mapping) or not loaded:
        msg = f"grid: expected a mapping of parameter names to values, got {loaded!r}"
        raise SweepError(msg)
    grid: dict[str, list[Any]] = {}
    for name, spec in loaded.items():
        if isinstance(spec, list):
            values = list(spec)
        elif isinstance(spec, Mapping):
            values = _range(str(name), spec)
        else:
            values = [spec]
        if not values:
            msg = f"grid: {name} has no values"
            raise SweepError(msg)
        grid[str(name)] = values
    return grid


def load_grid(path: Path) -> dict[str, list[Any]]:
    """Read and parse a grid file.

    Raises:
        SweepError: unreadable, not YAML, or a bad grid (naming the file).
    """
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        msg = f"cannot read grid file {path}: {err}"
        raise SweepError(msg) from err
    try:
        return parse_grid(loaded)
    except SweepError as err:
        msg = f"{path}: {err}"
        raise SweepError(msg) from err


def combinations(strategy: str, grid: Mapping[str, Sequence[Any]]) -> list[Combination]:
    """Every combination of ``grid`` (the last parameter varying fastest), numbered from 0."""
    count = 1
    for values in grid.values():
        count *= len(values)
    if count > _MAX_COMBINATIONS:
        msg = f"grid: {count} combinations, more than {_MAX_COMBINATIONS}"
        raise SweepError(msg)
    width = max(3, len(str(count - 1)))
    names = list(grid)
    return [
        Combination(f"{strategy}-{n:0{width}d}", dict(zip(names, values, strict=True)))
        for n, values in enumerate(itertools.product(*grid.values()))
    ]


@dataclass(frozen=True)
class TickScan:
    """What a tick file holds: its tokens (in order of first appearance) and its span of event time."""

    tokens: tuple[int, ...]
    first: datetime | None
    last: datetime | None

    def window(self) -> ReportOptions:
        """Statistics over the file's whole span, the same window for every combination."""
        return ReportOptions(since=self.first, until=self.last)


def scan_ticks(ticks: Path) -> TickScan:
    """Read a JSONL or CSV tick file once for its tokens and span.

    Decodes with the pipeline's own decoder (bad lines are skipped, as the
    pipeline dead-letters them).
    """
    from connectors.files import read_tick_batches  # a file source, read here in batches

    seen: dict[int, None] = {}
    first: datetime | None = None
    last: datetime | None = None
    times = TimeCache()
    for batch in read_tick_batches(ticks, "scan"):
        decoded = decode_tick_batch(batch.values, times)
        for tick in decoded.ticks:
            seen[tick.data.instrument_token] = None
        if decoded.times:
            low, high = min(decoded.times), max(decoded.times)
            first = low if first is None or low < first else first
            last = high if last is None or high > last else last
    return TickScan(tuple(seen), first, last)


def instruments_in(ticks: Path) -> tuple[int, ...]:
    """Every instrument token of a tick file, in order of first appearance."""
    return scan_ticks(ticks).tokens


def sweep_configs(
    strategy_type: str, combos: Sequence[Combination], instruments: Sequence[int]
) -> list[StrategyConfig]:
    """One paper-only config per combination.

    Raises:
        ConfigError: naming the combination's id (unknown strategy, bad parameters).
    """
    return [
        StrategyConfig.from_mapping(
            {
                "id": combo.id,
                "strategy_type": strategy_type,
                "instruments": list(instruments),
                "parameters": combo.parameters,
            }
        )
        for combo in combos
    ]


def _sort_key(rank_by: str) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    def key(row: dict[str, Any]) -> tuple[Any, ...]:
        value = row[rank_by]
        missing = value is None
        ordered = 0.0 if missing else (value if rank_by == "max_drawdown" else -value)
        return (missing, ordered, row["id"])

    return key


def rank(rows: list[dict[str, Any]], rank_by: str) -> list[dict[str, Any]]:
    """``rows`` best first by ``rank_by`` (ties and missing values by id), each with its ``rank``."""
    if rank_by not in RANK_BY:
        msg = f"--rank-by must be one of {list(RANK_BY)}, got {rank_by!r}"
        raise SweepError(msg)
    ranked = sorted(rows, key=_sort_key(rank_by))
    return [{"rank": n, **row} for n, row in enumerate(ranked, start=1)]


def stats_rows(
    replay_dir: Path, combos: Sequence[Combination], options: ReportOptions | None = None
) -> list[dict[str, Any]]:
    """Each combination's id, parameters, ``total_pnl`` and report statistics from a replay's outputs."""
    report = replay_report(replay_dir, options or ReportOptions())
    by_id = {a["strategy_id"]: a for a in report["accounts"] if a["broker"] == "paper"}
    rows = []
    for combo in combos:
        account = by_id.get(combo.id)
        if account is None:
            msg = f"sweep: no outputs for combination {combo.id} in {replay_dir}"
            raise SweepError(msg)
        stats = account["stats"]
        rows.append(
            {
                "id": combo.id,
                "parameters": combo.parameters,
                "total_pnl": stats["final_equity"] - stats["initial_equity"],
                **stats,
            }
        )
    return rows


def run_sweep(  # the command's options
    ticks: Path,
    strategy_type: str,
    grid: Mapping[str, Sequence[Any]],
    out_dir: Path,
    params: PipelineParams | None = None,
    *,
    rank_by: str = "total_pnl",
    instruments: Sequence[int] | None = None,
    on_progress: Callable[[int], None] | None = None,
    options: ReportOptions | None = None,
) -> SweepResult:
    """Replay ``ticks`` once with every combination as its own paper account; rank their statistics.

    Writes the replay's fills, snapshots and tick dead letters
    (:data:`SWEEP_TOPICS`) and ``portfolio.json`` to ``out_dir/replay``, and the ranked rows to
    ``out_dir/sweep.json`` and ``out_dir/sweep.csv``. ``options`` set the
    statistics' window and interval; by default every combination is
    measured over the file's whole span of event time (first to last tick),
    with the report's interval for that span.

    Raises:
        ConfigError: naming a combination (unknown strategy, bad parameters).
        SweepError: a bad metric, or a file without ticks of the instruments.
    """
    if rank_by not in RANK_BY:
        msg = f"--rank-by must be one of {list(RANK_BY)}, got {rank_by!r}"
        raise SweepError(msg)
    scan = scan_ticks(ticks)
    tokens = tuple(instruments) if instruments else scan.tokens
    if not scan.tokens:
        msg = f"sweep: {ticks} holds no valid ticks"
        raise SweepError(msg)
    combos = combinations(strategy_type, grid)
    configs = sweep_configs(strategy_type, combos, tokens)
    params = replace(params or PipelineParams(), brokers=("paper",))
    replay_dir = out_dir / "replay"
    summary = run_replay(
        ticks, configs, replay_dir, params, on_progress=on_progress, keep_topics=SWEEP_TOPICS
    )
    rows = rank(stats_rows(replay_dir, combos, options or scan.window()), rank_by)
    result = SweepResult(strategy_type, rank_by, rows, summary.ticks)
    write_rows(out_dir, result)
    return result


_CSV_STATS: Final = (
    "total_pnl",
    "total_return",
    "sharpe",
    "sortino",
    "max_drawdown",
    "max_drawdown_amount",
    "annualised_volatility",
    "trades",
    "wins",
    "losses",
    "win_rate",
    "profit_factor",
    "expectancy",
    "fees_paid",
    "exposure",
    "average_holding_seconds",
    "initial_equity",
    "final_equity",
)


def write_rows(out_dir: Path, result: SweepResult) -> None:
    """Write ``sweep.json`` (every row, every statistic) and ``sweep.csv`` (a column per value)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    document = {
        "strategy_type": result.strategy_type,
        "rank_by": result.rank_by,
        "ticks": result.ticks,
        "combinations": result.rows,
    }
    (out_dir / "sweep.json").write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")
    names = list(result.rows[0]["parameters"]) if result.rows else []
    with (out_dir / "sweep.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["rank", "id", *names, *_CSV_STATS])
        for row in result.rows:
            writer.writerow(
                [
                    row["rank"],
                    row["id"],
                    *(row["parameters"][n] for n in names),
                    *(row[s] for s in _CSV_STATS),
                ]
            )


def check_strategy_type(strategy_type: str) -> None:
    """Fail early on an unknown strategy type (a ConfigError naming it)."""
    from operators.strategy_registry import resolve

    try:
        resolve(strategy_type)
    except ConfigError as err:
        msg = f"sweep --strategy {strategy_type!r}: {err}"
        raise ConfigError(msg) from err
