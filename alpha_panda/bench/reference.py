"""The peers' momentum rule in plain Python, no engine: the fill counts every engine must match.

Per instrument, keep the last ``lookback`` prices, the current one included.
With ``lookback`` held, ``m = (p_now - p_oldest) / p_oldest``. When
``m > threshold`` becomes true (edge-triggered), BUY 1; when
``m < -threshold`` becomes true, SELL 1 if the position is above 0. Fills
are immediate. The same rule as ``../shared/peers/reference.py``.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

LOOKBACK = 20
THRESHOLD = 0.01


@dataclass(frozen=True)
class ReferenceFills:
    """What the rule did over a tape: BUY and SELL fills, ticks, loop seconds."""

    buys: int
    sells: int
    ticks: int
    instruments: int
    seconds: float

    @property
    def fills(self) -> int:
        """BUY plus SELL fills."""
        return self.buys + self.sells


def read_csv_ticks(path: Path) -> list[tuple[int, float]]:
    """``(token, price)`` of every row of a peer tape's ``ticks.csv``, header skipped."""
    with path.open() as lines:
        next(lines)
        return [(int(token), float(price)) for token, _at, price, _volume in (ln.split(",") for ln in lines)]


def reference_fills(
    ticks: Iterable[tuple[int, float]], lookback: int = LOOKBACK, threshold: float = THRESHOLD
) -> ReferenceFills:
    """Run the rule over ``(token, price)`` ticks in order; ``seconds`` times the loop only."""
    rows = list(ticks)
    start = time.perf_counter()
    window: dict[int, deque[float]] = {}
    up: dict[int, bool] = {}
    down: dict[int, bool] = {}
    held: dict[int, int] = {}
    buys = sells = 0
    for token, price in rows:
        prices = window.get(token)
        if prices is None:
            prices = window[token] = deque(maxlen=lookback)
            up[token] = down[token] = False
            held[token] = 0
        prices.append(price)
        if len(prices) < lookback:
            continue
        move = (price - prices[0]) / prices[0]
        rising, falling = move > threshold, move < -threshold
        if rising and not up[token]:
            buys += 1
            held[token] += 1
        if falling and not down[token] and held[token] > 0:
            sells += 1
            held[token] -= 1
        up[token], down[token] = rising, falling
    return ReferenceFills(buys, sells, len(rows), len(window), time.perf_counter() - start)
