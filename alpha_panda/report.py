"""``alpha-panda report``: performance of every account and of the whole book.

Reads a replay output directory or the Postgres ledger
(:mod:`connectors.report_inputs`), computes the statistics
(:mod:`operators.performance`, :mod:`operators.round_trips`) and writes two
files into the output directory:

- ``report.json``: every number of the report, with the equity points;
- ``report.html``: one self-contained page (plotly.js inline, works offline)
  with equity and drawdown charts, the statistics and the round trips.

Equity comes from ``pnl_snapshot`` events (``total_value``): one point per
snapshot, however many an account published. The ledger keeps no
snapshots, so there equity is rebuilt from the fills, with open positions
valued at their latest fill price. Round trips always come from fills.
Both files depend only on the input: the same input gives the same bytes.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import orjson

from connectors.report_inputs import ReportInputs, read_ledger_fills, read_replay_dir
from operators.performance import (
    YEAR,
    EquityPoint,
    Performance,
    Window,
    book_points,
    choose_interval,
    drawdowns,
    equity_from_fills,
    evaluate,
    in_window,
    snapshot_points,
    starting_equity,
)
from operators.round_trips import OpenCycle, RoundTrip, round_trips
from schemas.envelope import as_utc
from schemas.errors import AlphaPandaError
from schemas.events import OrderFilled

REPORT_JSON: Final = "report.json"
REPORT_HTML: Final = "report.html"

CONVENTIONS: Final = (
    "Times are event time (exchange time of the ticks), shown in UTC.",
    "Equity between points is the latest point's value; before the first point it is the "
    "account's starting equity.",
    "Per-interval returns sample equity on a fixed grid of the stated interval; intervals "
    "without events count with return 0.",
    "Annualised with 365.25 calendar days per year: volatility = sample std · √P, "
    "Sharpe = mean / std · √P, Sortino = mean / downside deviation · √P "
    "(risk-free rate and target 0; P = intervals per year).",
    "Max drawdown: deepest fall from a running peak; its duration runs from that peak to "
    "the recovery of it, or to the end of the report.",
    "A trade is a round trip: one instrument from flat to flat; a win has net P&L > 0 after fees. "
    "Profit factor = gross wins / gross losses; expectancy = mean net P&L per trade.",
    "Exposure: share of the report's time with a non-zero position in some instrument.",
)

_UNITS: Final = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


class ReportError(AlphaPandaError):
    """Bad report options (window, interval), or nothing to report."""


@dataclass(frozen=True)
class ReportOptions:
    """``since``/``until``: the window (inclusive, UTC); ``interval``: of returns (auto when None)."""

    since: datetime | None = None
    until: datetime | None = None
    interval: timedelta | None = None


def parse_interval(text: str) -> timedelta:
    """Parse ``30s``, ``1m``, ``5min``, ``1h``, ``1d`` or a number of seconds.

    Raises:
        ReportError: anything else, or not positive.
    """
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d)?\s*", text)
    if not found or float(found.group(1)) <= 0:
        msg = f"--interval must be a positive duration like 1s, 5m, 1h or 1d, got {text!r}"
        raise ReportError(msg)
    return timedelta(seconds=float(found.group(1)) * _UNITS[found.group(2) or "s"])


def interval_label(interval: timedelta) -> str:
    """Return ``interval`` as ``1 s``, ``15 min``, ``4 h`` or ``1 d``."""
    seconds = interval.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} s"


# --- building -----------------------------------------------------------------------


@dataclass(frozen=True)
class AccountSeries:
    """One account's inputs: starting equity, equity points and fills, all in time order."""

    broker: str
    strategy_id: str
    initial: float
    points: list[EquityPoint]
    fills: list[OrderFilled]


def _fills_by_account(fills: Sequence[OrderFilled]) -> dict[tuple[str, str], list[OrderFilled]]:
    grouped: dict[tuple[str, str], list[OrderFilled]] = defaultdict(list)
    for fill in sorted(fills, key=lambda f: as_utc(f.timestamp)):
        grouped[(fill.broker, fill.strategy_id)].append(fill)
    return grouped


def _replay_accounts(inputs: ReportInputs) -> list[AccountSeries]:
    snapshots = defaultdict(list)
    for snapshot in inputs.snapshots:
        snapshots[(snapshot.broker, snapshot.strategy_id)].append(snapshot)
    fills = _fills_by_account(inputs.fills)
    accounts = []
    for key in sorted(inputs.accounts):
        own = snapshots.get(key, [])
        reference = own[0] if own else inputs.accounts[key]
        if reference is None:
            msg = f"report: account {key[0]}/{key[1]} has fills but no pnl_snapshot to value it"
            raise ReportError(msg)
        initial = starting_equity(reference)
        accounts.append(AccountSeries(*key, initial, snapshot_points(own), fills.get(key, [])))
    return accounts


def _ledger_accounts(fills: Sequence[OrderFilled], starting_cash: Decimal) -> list[AccountSeries]:
    return [
        AccountSeries(broker, strategy_id, float(starting_cash), equity_from_fills(own, starting_cash), own)
        for (broker, strategy_id), own in sorted(_fills_by_account(fills).items())
    ]


def _window(accounts: Sequence[AccountSeries], options: ReportOptions, where: str) -> Window:
    times = [p.timestamp for a in accounts for p in a.points] + [
        as_utc(f.timestamp) for a in accounts for f in a.fills
    ]
    if options.since and options.until and options.since > options.until:
        msg = f"--since {options.since.isoformat()} is after --until {options.until.isoformat()}"
        raise ReportError(msg)
    if not times and not (options.since and options.until):
        msg = f"report: nothing to report in {where}: no snapshots or fills"
        raise ReportError(msg)
    start = options.since or min(times)
    end = options.until or max(times)
    if end < start:
        msg = f"report: no snapshots or fills in {where} after --since {start.isoformat()}"
        raise ReportError(msg)
    return Window(start, end)


def _money(value: Decimal | float | None) -> float | None:
    return None if value is None else float(value)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else as_utc(moment).isoformat()


def _stats(perf: Performance) -> dict[str, Any]:
    returns, drawdown, trades = perf.returns, perf.drawdown, perf.trades
    return {
        "initial_equity": perf.initial,
        "final_equity": perf.final,
        "total_return": returns.total_return,
        "intervals": returns.intervals,
        "mean_interval_return": returns.mean_return,
        "annualised_volatility": returns.volatility,
        "sharpe": returns.sharpe,
        "sortino": returns.sortino,
        "max_drawdown": drawdown.depth,
        "max_drawdown_amount": drawdown.amount,
        "max_drawdown_peak": _iso(drawdown.peak_time),
        "max_drawdown_trough": _iso(drawdown.trough_time),
        "max_drawdown_recovery": _iso(drawdown.recovery_time),
        "max_drawdown_duration_seconds": drawdown.duration_seconds,
        "trades": trades.trades,
        "wins": trades.wins,
        "losses": trades.losses,
        "win_rate": trades.win_rate,
        "profit_factor": trades.profit_factor,
        "expectancy": _money(trades.expectancy),
        "net_trade_pnl": _money(trades.net_pnl),
        "fees_paid": _money(perf.fees_paid),
        "average_holding_seconds": trades.average_holding_seconds,
        "exposure": perf.exposure,
    }


def _trip(trip: RoundTrip) -> dict[str, Any]:
    return {
        "broker": trip.broker,
        "strategy_id": trip.strategy_id,
        "instrument_token": trip.instrument_token,
        "direction": trip.direction,
        "quantity": trip.quantity,
        "entry_time": _iso(trip.entry_time),
        "exit_time": _iso(trip.exit_time),
        "entry_price": float(trip.entry_price),
        "exit_price": float(trip.exit_price),
        "gross_pnl": float(trip.gross_pnl),
        "fees": float(trip.fees),
        "net_pnl": float(trip.net_pnl),
        "holding_seconds": trip.holding_seconds,
        "fills": trip.fills,
    }


def _open(cycle: OpenCycle) -> dict[str, Any]:
    return {
        "instrument_token": cycle.instrument_token,
        "quantity": cycle.quantity,
        "entry_time": _iso(cycle.entry_time),
        "entry_price": float(cycle.entry_price),
        "fees": float(cycle.fees),
    }


def _curve(initial: float, points: Sequence[EquityPoint]) -> dict[str, Any]:
    return {
        "equity": [[_iso(p.timestamp), p.value] for p in points],
        "drawdown": drawdowns(initial, points),
    }


def build_report(
    accounts: Sequence[AccountSeries], options: ReportOptions, source: dict[str, Any], equity_source: str
) -> dict[str, Any]:
    """Return the whole report as JSON-ready data (see the module docstring)."""
    where = source.get("path") or source["kind"]
    window = _window(accounts, options, where)
    interval = options.interval or choose_interval(window)
    in_span: list[tuple[AccountSeries, float, list[EquityPoint], list[OrderFilled]]] = []
    for account in accounts:
        initial, points = in_window(account.points, account.initial, window)
        fills = [f for f in account.fills if as_utc(f.timestamp) <= window.end]
        in_span.append((account, initial, points, fills))
    all_fills = sorted((f for *_, fills in in_span for f in fills), key=lambda f: as_utc(f.timestamp))
    closed, still_open = round_trips(all_fills)
    closed = [t for t in closed if window.start <= t.exit_time <= window.end]
    report_accounts = []
    for account, initial, points, fills in in_span:
        key = (account.broker, account.strategy_id)
        trips = [t for t in closed if (t.broker, t.strategy_id) == key]
        perf = evaluate(initial, points, fills, trips, window, interval)
        report_accounts.append(
            {
                "broker": account.broker,
                "strategy_id": account.strategy_id,
                "stats": _stats(perf),
                **_curve(initial, points),
                "round_trips": [_trip(t) for t in trips],
                "open_positions": [_open(c) for c in still_open if (c.broker, c.strategy_id) == key],
            }
        )
    book_initial, book_curve = book_points([(initial, points) for _, initial, points, _ in in_span])
    book = evaluate(book_initial, book_curve, all_fills, closed, window, interval)
    return {
        "title": "Alpha Panda performance report",
        "source": source,
        "equity_source": equity_source,
        "window": {"start": _iso(window.start), "end": _iso(window.end)},
        "interval": {"seconds": interval.total_seconds(), "label": interval_label(interval)},
        "intervals_per_year": YEAR / interval,
        "conventions": list(CONVENTIONS),
        "book": {"stats": _stats(book), **_curve(book_initial, book_curve)},
        "accounts": report_accounts,
    }


# --- writing ------------------------------------------------------------------------


def _write(report: dict[str, Any], out_dir: Path) -> Path:
    from alpha_panda.report_html import render_html

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / REPORT_JSON).write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
    html_path = out_dir / REPORT_HTML
    html_path.write_text(render_html(report), encoding="utf-8")
    return html_path


def report_from_dir(
    directory: Path, out_dir: Path | None = None, options: ReportOptions | None = None
) -> Path:
    """Write the report of a replay output directory into ``out_dir`` (default: the same).

    Returns the path of ``report.html``; ``report.json`` is beside it.

    Raises:
        ReportInputError: the directory holds no replay outputs, or a
            file does not decode.
        ReportError: bad options, or nothing to report.
    """
    report = replay_report(directory, options or ReportOptions())
    return _write(report, out_dir or directory)


def replay_report(directory: Path, options: ReportOptions) -> dict[str, Any]:
    """The report of a replay output directory as JSON-ready data (nothing written).

    Raises:
        ReportInputError: the directory holds no replay outputs, or a
            file does not decode.
        ReportError: bad options, or nothing to report.
    """
    return build_report(
        _replay_accounts(read_replay_dir(directory)),
        options,
        {"kind": "replay", "path": str(directory)},
        "pnl_snapshot total_value, one point per snapshot",
    )


def report_from_ledger(
    url: str, out_dir: Path, starting_cash: Decimal, options: ReportOptions | None = None
) -> Path:
    """Write the report of the Postgres ledger's fills into ``out_dir``; returns ``report.html``.

    Every account (broker, strategy) with a fill up to ``options.until``
    starts with ``starting_cash``.

    Raises:
        PostgresConnectorError: the ledger cannot be read.
        ReportError: bad options, or no fills to report.
    """
    options = options or ReportOptions()
    fills = read_ledger_fills(url, options.until)
    source = {
        "kind": "ledger",
        "since": _iso(options.since),
        "until": _iso(options.until),
        "starting_cash": float(starting_cash),
    }
    equity = "fills of the ledger, open positions valued at their latest fill price (no snapshots)"
    report = build_report(_ledger_accounts(fills, starting_cash), options, source, equity)
    return _write(report, out_dir)


def write_report(out_dir: Path) -> Path:
    """Write ``report.html`` and ``report.json`` of the replay outputs in ``out_dir`` into it.

    For ``alpha-panda replay --report``. Returns the path of ``report.html``.
    """
    return report_from_dir(out_dir, out_dir)
