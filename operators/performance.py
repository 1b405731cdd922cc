"""Performance statistics of equity curves and round trips, pure and engine-free.

Inputs are plain data: an account's equity before the report window
(``initial``), its equity points inside the window (from ``pnl_snapshot``
``total_value``, or rebuilt from fills), its fills and its round trips
(:mod:`operators.round_trips`). Times are aware datetimes, money is account
currency, fractions are plain numbers (0.05 = 5 %).

Conventions, stated in every report:

- **Equity** between points is a step function: the value of the latest
  point at or before a time, ``initial`` before the first.
- **Per-interval returns** sample that step function on a grid of fixed
  ``interval`` of event time: the grid starts at the window's start rounded
  down to a multiple of ``interval`` since the Unix epoch (valued at
  ``initial``) and ends at the first grid time at or after the window's end.
  ``r_k = v_k / v_(k-1) − 1``. Grid intervals in which nothing happened
  count, with return 0, so the returns cover calendar time.
- **Annualisation** uses calendar time: ``P = 365.25 days / interval``
  intervals per year. Volatility = sample standard deviation (n − 1) of the
  returns · √P. Sharpe = mean / standard deviation · √P, Sortino = mean /
  downside deviation · √P, where the downside deviation is
  √(Σ min(r, 0)² / n); the risk-free rate and target are 0. A ratio with a
  zero denominator, or fewer than two returns, is ``None``.
- **Drawdown** at a point = value / running peak − 1, over ``initial``
  and every point. The maximum drawdown is the deepest (reported as a
  positive fraction and as money); its duration runs from the peak before
  it to the first point back at that peak, or to the window's end when
  equity has not recovered.
- **Trades** are closed round trips; a win has ``net_pnl > 0``, a loss
  ``net_pnl < 0``. Profit factor = Σ wins / |Σ losses| (``None`` without
  losses); expectancy = mean ``net_pnl``.
- **Exposure** = share of the window's time during which the account (for
  the book: any account) held a non-zero position in some instrument.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Final

from operators.money import to_decimal
from operators.portfolio import Portfolio, PortfolioConfig
from operators.round_trips import RoundTrip
from schemas.envelope import as_utc
from schemas.events import OrderFilled, PnlSnapshot

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
YEAR: Final = timedelta(days=365.25)
"""Calendar year used to annualise per-interval returns."""
INTERVALS: Final = (
    timedelta(seconds=1),
    timedelta(seconds=5),
    timedelta(seconds=15),
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=15),
    timedelta(hours=1),
    timedelta(hours=4),
    timedelta(days=1),
)
"""Candidate return intervals, smallest first (see :func:`choose_interval`)."""
MAX_INTERVALS: Final = 500

_ZERO = Decimal(0)


@dataclass(frozen=True)
class EquityPoint:
    """Equity (account currency) of an account or the book at an event time (UTC)."""

    timestamp: datetime
    value: float


@dataclass(frozen=True)
class Window:
    """The report's time span: ``start`` inclusive, ``end`` inclusive (UTC)."""

    start: datetime
    end: datetime


@dataclass(frozen=True)
class ReturnStats:
    """Return statistics of one equity curve sampled every ``interval``."""

    total_return: float
    intervals: int
    mean_return: float
    volatility: float | None
    sharpe: float | None
    sortino: float | None


@dataclass(frozen=True)
class Drawdown:
    """The deepest drawdown: ``depth`` a fraction >= 0, ``amount`` money >= 0."""

    depth: float
    amount: float
    peak_time: datetime | None
    trough_time: datetime | None
    recovery_time: datetime | None
    duration_seconds: float


@dataclass(frozen=True)
class TradeStats:
    """Statistics of closed round trips (money as Decimal, times in seconds)."""

    trades: int
    wins: int
    losses: int
    win_rate: float | None
    profit_factor: float | None
    expectancy: Decimal | None
    net_pnl: Decimal
    average_holding_seconds: float | None


@dataclass(frozen=True)
class Performance:
    """Everything a report states about one account or the book."""

    initial: float
    final: float
    returns: ReturnStats
    drawdown: Drawdown
    trades: TradeStats
    fees_paid: Decimal
    exposure: float


# --- equity points ------------------------------------------------------------------


def snapshot_points(snapshots: Iterable[PnlSnapshot]) -> list[EquityPoint]:
    """Return one point per snapshot (``timestamp`` in UTC, ``total_value``), stably time-sorted."""
    points = [EquityPoint(as_utc(s.timestamp), s.total_value) for s in snapshots]
    return sorted(points, key=lambda p: p.timestamp)


def starting_equity(snapshot: PnlSnapshot) -> float:
    """Return the account's equity before any fill: ``total_value − total_pnl``.

    That is the account's starting cash (``operators.portfolio`` keeps the
    identity exactly); the float difference is rounded to 1e-6 to drop the
    rounding of the two wire floats.
    """
    return round(snapshot.total_value - snapshot.total_pnl, 6)


def equity_from_fills(fills: Iterable[OrderFilled], starting_cash: Decimal) -> list[EquityPoint]:
    """Return the account's equity after each fill, marked at fill prices.

    For sources without snapshots (the ledger): the fills of one account, in
    time order, go through :class:`operators.portfolio.Portfolio`; each open
    position is valued at its own latest fill price, as there are no market
    marks. A duplicate order id gives no point.
    """
    portfolio = Portfolio(PortfolioConfig(starting_cash))
    state = portfolio.new_state()
    points = []
    for fill in fills:
        if portfolio.on_fill(state, fill):
            value = float(portfolio.valuation(state).total_value)
            points.append(EquityPoint(as_utc(fill.timestamp), value))
    return points


def in_window(
    points: Sequence[EquityPoint], initial: float, window: Window
) -> tuple[float, list[EquityPoint]]:
    """Split ``points`` at the window: the value before ``window.start`` and the points inside it."""
    before = [p for p in points if p.timestamp < window.start]
    inside = [p for p in points if window.start <= p.timestamp <= window.end]
    return (before[-1].value if before else initial), inside


def book_points(accounts: Sequence[tuple[float, Sequence[EquityPoint]]]) -> tuple[float, list[EquityPoint]]:
    """Return the book's initial equity and curve: the sum of every account's step function.

    In: ``(initial, points)`` per account. Out: one point per distinct time
    at which any account has a point, valued after all points at that time.
    """
    latest = [initial for initial, _ in accounts]
    events = sorted(
        ((p.timestamp, index, p.value) for index, (_, points) in enumerate(accounts) for p in points),
        key=lambda event: event[0],
    )
    curve: list[EquityPoint] = []
    for when, index, value in events:
        latest[index] = value
        total = math.fsum(latest)
        if curve and curve[-1].timestamp == when:
            curve[-1] = EquityPoint(when, total)
        else:
            curve.append(EquityPoint(when, total))
    return math.fsum(initial for initial, _ in accounts), curve


# --- returns ------------------------------------------------------------------------


def choose_interval(window: Window) -> timedelta:
    """Return the smallest of :data:`INTERVALS` that splits ``window`` into at most 500 intervals."""
    for interval in INTERVALS:
        if _grid_count(window, interval) <= MAX_INTERVALS:
            return interval
    return INTERVALS[-1]


def _grid_start(window: Window, interval: timedelta) -> datetime:
    return window.start - (window.start - EPOCH) % interval


def _grid_count(window: Window, interval: timedelta) -> int:
    span = window.end - _grid_start(window, interval)
    return max(1, -(-span // interval))


def sampled_equity(
    initial: float, points: Sequence[EquityPoint], window: Window, interval: timedelta
) -> list[float]:
    """Return the equity on the window's grid: ``initial``, then the value at each grid time.

    ``points`` are the window's points in time order; see the module
    docstring for the grid.
    """
    start = _grid_start(window, interval)
    values = [initial]
    current, index = initial, 0
    for k in range(1, _grid_count(window, interval) + 1):
        at = start + k * interval
        while index < len(points) and points[index].timestamp <= at:
            current = points[index].value
            index += 1
        values.append(current)
    return values


def interval_returns(values: Sequence[float]) -> list[float]:
    """Return ``v_k / v_(k-1) − 1`` for consecutive values (a zero value ends the series)."""
    returns = []
    for before, after in zip(values, values[1:], strict=False):
        if before == 0:
            break
        returns.append(after / before - 1)
    return returns


def return_stats(values: Sequence[float], interval: timedelta) -> ReturnStats:
    """Return total return, volatility, Sharpe and Sortino of equity sampled every ``interval``."""
    returns = interval_returns(values)
    total = values[-1] / values[0] - 1 if values[0] else 0.0
    n = len(returns)
    mean = math.fsum(returns) / n if n else 0.0
    per_year = math.sqrt(YEAR / interval)
    std = math.sqrt(math.fsum((r - mean) ** 2 for r in returns) / (n - 1)) if n >= 2 else None
    downside = math.sqrt(math.fsum(min(r, 0.0) ** 2 for r in returns) / n) if n >= 2 else None
    return ReturnStats(
        total_return=total,
        intervals=n,
        mean_return=mean,
        volatility=None if std is None else std * per_year,
        sharpe=mean / std * per_year if std else None,
        sortino=mean / downside * per_year if downside else None,
    )


# --- drawdown -----------------------------------------------------------------------


def drawdowns(initial: float, points: Sequence[EquityPoint]) -> list[float]:
    """Return the drawdown (value / running peak − 1, <= 0) at each point."""
    peak = initial
    out = []
    for point in points:
        peak = max(peak, point.value)
        out.append(point.value / peak - 1 if peak else 0.0)
    return out


def max_drawdown(initial: float, points: Sequence[EquityPoint], window: Window) -> Drawdown:
    """Return the deepest drawdown of ``initial`` (at ``window.start``) then ``points``."""
    curve = [EquityPoint(window.start, initial), *points]
    peak = curve[0]
    deepest = 0.0
    found: tuple[EquityPoint, EquityPoint] | None = None
    for point in curve:
        if point.value > peak.value:
            peak = point
        depth = point.value / peak.value - 1 if peak.value else 0.0
        if depth < deepest:
            deepest, found = depth, (peak, point)
    if found is None:
        return Drawdown(0.0, 0.0, None, None, None, 0.0)
    top, trough = found
    recovery = next(
        (p.timestamp for p in curve if p.timestamp >= trough.timestamp and p.value >= top.value),
        None,
    )
    until = recovery or window.end
    return Drawdown(
        depth=-deepest,
        amount=top.value - trough.value,
        peak_time=top.timestamp,
        trough_time=trough.timestamp,
        recovery_time=recovery,
        duration_seconds=(until - top.timestamp).total_seconds(),
    )


# --- trades, fees, exposure ---------------------------------------------------------


def trade_stats(trips: Sequence[RoundTrip]) -> TradeStats:
    """Return count, win rate, profit factor, expectancy and mean holding time of ``trips``."""
    nets = [trip.net_pnl for trip in trips]
    won = sum((n for n in nets if n > 0), _ZERO)
    lost = sum((n for n in nets if n < 0), _ZERO)
    wins = sum(1 for n in nets if n > 0)
    losses = sum(1 for n in nets if n < 0)
    count = len(trips)
    total = sum(nets, _ZERO)
    return TradeStats(
        trades=count,
        wins=wins,
        losses=losses,
        win_rate=wins / count if count else None,
        profit_factor=float(won / -lost) if losses else None,
        expectancy=total / count if count else None,
        net_pnl=total,
        average_holding_seconds=(
            math.fsum(trip.holding_seconds for trip in trips) / count if count else None
        ),
    )


def fees_paid(fills: Iterable[OrderFilled], window: Window) -> Decimal:
    """Return the fees of the fills inside ``window`` (each (broker, order_id) once)."""
    seen: dict[tuple[str, str], Decimal] = {}
    for fill in fills:
        if window.start <= as_utc(fill.timestamp) <= window.end:
            seen.setdefault((fill.broker, fill.order_id), to_decimal(fill.fees))
    return sum(seen.values(), _ZERO)


def exposure(fills: Iterable[OrderFilled], window: Window) -> float:
    """Return the share of ``window`` during which some position was non-zero.

    In: every fill up to the window's end (earlier ones set the positions
    held at its start), in time order. Positions are keyed by broker,
    strategy and instrument, so the fills of several accounts give the
    book's exposure.
    """
    span = (window.end - window.start).total_seconds()
    if span <= 0:
        return 0.0
    positions: dict[tuple[str, str, int], int] = {}
    seen: set[tuple[str, str]] = set()
    held_since: datetime | None = None
    held = 0.0
    for fill in fills:
        if (fill.broker, fill.order_id) in seen:
            continue
        seen.add((fill.broker, fill.order_id))
        when = min(max(as_utc(fill.timestamp), window.start), window.end)
        key = (fill.broker, fill.strategy_id, fill.instrument_token)
        signed = fill.quantity if fill.side == "BUY" else -fill.quantity
        positions[key] = positions.get(key, 0) + signed
        holding = any(positions.values())
        if holding and held_since is None:
            held_since = when
        elif not holding and held_since is not None:
            held += (when - held_since).total_seconds()
            held_since = None
    if held_since is not None:
        held += (window.end - held_since).total_seconds()
    return held / span


# --- all together -------------------------------------------------------------------


def evaluate(
    initial: float,
    points: Sequence[EquityPoint],
    fills: Sequence[OrderFilled],
    trips: Sequence[RoundTrip],
    window: Window,
    interval: timedelta,
) -> Performance:
    """Return the performance of one account or the book over ``window``.

    ``initial`` and ``points``: equity before and inside the window;
    ``fills``: every fill up to the window's end, in time order; ``trips``:
    the round trips closed inside the window.
    """
    final = points[-1].value if points else initial
    return Performance(
        initial=initial,
        final=final,
        returns=return_stats(sampled_equity(initial, points, window, interval), interval),
        drawdown=max_drawdown(initial, points, window),
        trades=trade_stats(trips),
        fees_paid=fees_paid(fills, window),
        exposure=exposure(fills, window),
    )
