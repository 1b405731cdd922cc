"""Mean reversion: Bollinger bands confirmed by RSI.

Bollinger bands are ``SMA ± std_multiplier · s`` over the last
``lookback_period`` prices (current included), ``s`` being the sample standard
deviation (n − 1). RSI uses simple averages of the last ``rsi_period`` price
changes: ``RSI = 100 − 100 / (1 + avg_gain / avg_loss)``, and 100 when there
are no losses (a flat window included). The strategy wants to BUY when
``RSI < oversold`` and the price is below the lower band, and to SELL when
``RSI > overbought`` and the price is above the upper band.
:class:`MeanReversionRule` says so on every tick the condition holds;
:class:`MeanReversion` is the rule edge-triggered by the framework.

Most ticks of a random walk have an RSI between the two levels, so no signal
is possible: once warm, a tick first tests a running estimate of the RSI (O(1))
with a margin wider than its rounding error. When that cannot rule a signal
out (a trend keeps the RSI beyond a level), a second test asks whether the
price is clearly inside its band (the window's spread from ``math.dist``, in
C, with a margin far wider than its rounding). Only a tick both tests leave
open is decided exactly, as a plain loop would (the decisions and every float
they carry are the same as without the tests).
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from math import dist
from typing import Any

from operators.decision import Decision
from operators.parameters import build_config, require
from operators.strategy_api import EdgeTriggered, StrategyState
from schemas.events import Side


@dataclass(frozen=True)
class MeanReversionConfig:
    """Parameters of the mean-reversion strategy.

    ``lookback_period``: prices in the Bollinger window (>= 2).
    ``std_multiplier``: band half-width in sample standard deviations (> 0).
    ``rsi_period``: price changes in the RSI (>= 1; needs ``rsi_period + 1`` prices).
    ``oversold`` < ``overbought``: RSI levels, both in [0, 100].
    ``position_size``: shares per signal (> 0).
    """

    lookback_period: int = 20
    std_multiplier: float = 2.0
    rsi_period: int = 14
    oversold: float = 30.0
    overbought: float = 70.0
    position_size: int = 100

    def __post_init__(self) -> None:
        """Reject values the strategy cannot run with."""
        require(self.lookback_period >= 2, self, "lookback_period", self.lookback_period, "an integer >= 2")
        require(self.std_multiplier > 0, self, "std_multiplier", self.std_multiplier, "a number > 0")
        require(self.rsi_period >= 1, self, "rsi_period", self.rsi_period, "an integer >= 1")
        require(0 <= self.oversold <= 100, self, "oversold", self.oversold, "a number in [0, 100]")
        require(0 <= self.overbought <= 100, self, "overbought", self.overbought, "a number in [0, 100]")
        require(
            self.oversold < self.overbought,
            self,
            "oversold",
            self.oversold,
            f"below overbought ({self.overbought})",
        )
        require(self.position_size > 0, self, "position_size", self.position_size, "an integer > 0")

    @property
    def warm_up(self) -> int:
        """Prices needed before the first signal: max(lookback, rsi_period + 1)."""
        return max(self.lookback_period, self.rsi_period + 1)

    @classmethod
    def from_parameters(cls, parameters: Mapping[str, Any]) -> MeanReversionConfig:
        """Build a config from a strategy's ``parameters`` mapping.

        Raises:
            ConfigError: unknown name, wrong type or out-of-range value.
        """
        return build_config(cls, parameters)


@dataclass(slots=True)
class MeanReversionState(StrategyState):
    """One instrument's mean-reversion state for one strategy.

    ``prices``: the most recent prices, oldest first, at most
    ``max(lookback_period, rsi_period + 1)``. ``changes``: the last
    ``rsi_period`` price changes (kept so a tick costs one subtraction).
    ``active``: the framework's edge (the side signalled last while it is
    still wanted).

    The RSI pre-test's running sum (see :meth:`MeanReversionRule.on_price`):
    ``abs_sum``, the sum of ``|changes|`` kept up to date tick by tick;
    ``abs_floor``, at or below it the running sum is recomputed (a quarter of its
    value when last recomputed, at least ``_TINY``); ``resync_in``, running
    updates left before the next exact recomputation (0: recompute on the
    next warm tick, as for a new state or one restored from a snapshot
    taken before these fields existed, which reads the class defaults).
    """

    prices: deque[float]
    changes: deque[float]
    active: Side | None = None
    abs_sum: float = 0.0
    abs_floor: float = 0.0
    resync_in: int = 0

    def copy(self) -> MeanReversionState:
        """Return a copy that shares no mutable data with this state."""
        return MeanReversionState(
            deque(self.prices, maxlen=self.prices.maxlen),
            deque(self.changes, maxlen=self.changes.maxlen),
            self.active,
            self.abs_sum,
            self.abs_floor,
            self.resync_in,
        )

    def __getstate__(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Also a snapshot taken before slots, or before the pre-test's fields: they take their defaults.
        for name in self.__slots__:
            setattr(self, name, state.get(name, _FIELD_DEFAULTS.get(name)))


_FIELD_DEFAULTS: dict[str, Any] = {
    f.name: f.default for f in dataclasses.fields(MeanReversionState) if f.default is not dataclasses.MISSING
}


def _rsi_of(changes: deque[float]) -> float:
    # rsi() with C-level sums in the same order (identical results, fewer bytecodes).
    gains = sum(filter(_POSITIVE, changes))
    losses = -sum(filter(_NOT_POSITIVE, changes))
    if losses == 0:
        return 100.0
    n = len(changes)
    return 100.0 - 100.0 / (1.0 + (gains / n) / (losses / n))


_POSITIVE = (0.0).__lt__
_NOT_POSITIVE = (0.0).__ge__

_BAND_NARROWED = 1.0 - 1e-9
"""The band pre-test's relative margin (see :meth:`MeanReversionRule._decide`)."""
_BAND_SLACK = 1e-12
"""Its absolute margin, per unit of price."""
_BAND_RANGE = (1e-140, 1e140)
"""Where it is used: the squares of the deviations stay normal floats (no underflow, no overflow)."""

_TINY = 1e-280
"""Below this sum of ``|changes|`` the pre-test is not used (no subnormal quotients)."""
_HUGE = 1e280
"""At or above it neither (no overflow)."""


def rsi(changes: list[float]) -> float:
    """Return the RSI (0..100) of price ``changes`` using simple averages.

    100 when there are no losses, flat changes included.
    """
    gains = 0.0
    losses = 0.0
    for change in changes:
        if change > 0:
            gains += change
        else:
            losses -= change
    if losses == 0:
        return 100.0
    n = len(changes)
    relative_strength = (gains / n) / (losses / n)
    return 100.0 - 100.0 / (1.0 + relative_strength)


class MeanReversionRule:
    """Mean reversion as a strategy: feed it prices, it says what it wants on every tick.

    Confidence is the mean of two strengths, each in (0, 1]:
    the RSI's depth beyond its level (BUY: ``(oversold − RSI) / oversold``,
    SELL: ``(RSI − overbought) / (100 − overbought)``) and the price's
    distance beyond the band in band half-widths, capped at 1
    (``min(1, |price − band| / (k·s))``).
    """

    config_type = MeanReversionConfig

    def __init__(self, config: MeanReversionConfig) -> None:
        self.config = config
        self._lookback = config.lookback_period
        self._k = config.std_multiplier
        self._rsi_period = config.rsi_period
        self._oversold = config.oversold
        self._overbought = config.overbought
        self._size = config.position_size
        self._window = config.warm_up
        # The RSI pre-test (see on_price): levels as (level - 50) / 50, narrowed by the margin.
        margin = 32 * (config.rsi_period + 1) * sys.float_info.epsilon + 1e-9
        self._low = (config.oversold - 50.0) / 50.0 + margin
        self._high = (config.overbought - 50.0) / 50.0 - margin
        self._back = -1 - config.rsi_period
        self._sqrt_dof = math.sqrt(config.lookback_period - 1)

    def new_state(self) -> MeanReversionState:
        """Return the state of an instrument that has seen no prices yet."""
        return MeanReversionState(deque(maxlen=self._window), deque(maxlen=self._rsi_period))

    def on_price(self, state: MeanReversionState, price: float) -> Decision | None:
        """Add ``price`` (> 0) to the window; return the side wanted now, or ``None``.

        ``None`` during warm-up (fewer than ``max(lookback_period,
        rsi_period + 1)`` prices) and when neither condition holds.
        ``metadata`` holds ``rsi``, ``sma``, ``std``, ``upper`` and ``lower``
        (prices).

        Once warm, a tick whose RSI is clearly between the two levels is
        ruled out in O(1) by a running estimate (see the comment at the
        test); every other tick is decided by :meth:`_decide`, the exact
        computation, so the decisions and their floats are the same as
        computing everything on every tick.
        """
        prices = state.prices
        changes = state.changes
        if len(prices) < self._window:
            if prices:
                changes.append(price - prices[-1])
            prices.append(price)
            if len(prices) < self._window:
                return None
            return self._decide(state, price)
        # The pre-test. With g and l the sums of gains and losses of the
        # n = rsi_period changes, a = g + l = sum |change| and s = g - l, which
        # telescopes to price - (price n ticks ago): RSI = 100 g / a =
        # 50 + 50 s / a when l > 0. So a * lo < s < a * hi, with lo and hi the
        # levels mapped to (level - 50) / 50 and narrowed by a margin mu, means
        # the RSI is within [oversold, overbought]: no side can be wanted and
        # the exact code would return None. a is state.abs_sum, updated by
        # adding the new |change| and subtracting the one leaving the window.
        #
        # Why mu = 32 (n + 1) * 2**-52 + 1e-9 suffices (u = 2**-53; errors
        # relative to a, in units of s / a):
        # - abs_sum is recomputed (a recursive sum: (n - 1) u) after at most n
        #   running updates, and at once when it falls below abs_floor, a
        #   quarter of its last recomputed value a0 (or _TINY), so a0 <= 4 a;
        #   each of its <= 2n roundings is <= u of a partial sum of |changes|
        #   of the last 2n ticks, <= a0 + a <= 5 a: error <= 16 n u;
        # - each stored change is a difference rounded once, so their exact sum
        #   and the rounded telescoped difference differ by <= 2 u;
        # - rounding a * lo (or a * hi): <= u;
        # - the exact RSI (two recursive sums, four divisions, an addition and
        #   a subtraction) is within (50 n + 325) u points of 100 g / a, i.e.
        #   (n + 6.5) u of s / a (its sensitivity to the ratio is <= 25);
        # - lo and hi themselves: a few u, inside the 1e-9.
        # Total <= (17 n + 11) u: mu is over three times that. The test also
        # needs _TINY < a < _HUGE, which keeps g, l and their quotients normal
        # and finite (inside the margin g and l are >= 4e-10 a). It fails for a
        # flat window (a = s = 0) and when l = 0 (s = a, hi < 1), and NaN fails
        # every comparison, so the exact code still answers those.
        change = price - prices[-1]
        total = state.abs_sum + abs(change) - abs(changes[0])
        changes.append(change)
        prices.append(price)
        left = state.resync_in
        if left and state.abs_floor < total < _HUGE:
            state.resync_in = left - 1
        else:
            total = sum(map(abs, changes))
            floor = total * 0.25
            state.abs_floor = floor if floor > _TINY else _TINY
            state.resync_in = self._rsi_period
            if not _TINY < total < _HUGE:
                state.abs_sum = total
                return self._decide(state, price)
        state.abs_sum = total
        if total * self._low < price - prices[self._back] < total * self._high:
            return None
        return self._decide(state, price)

    def _decide(self, state: MeanReversionState, price: float) -> Decision | None:
        """The exact decision on a warm window that already holds ``price`` (the definition)."""
        prices = state.prices
        # Cheap necessary conditions first; the exact band only when they hold.
        # Sums run in the same order as a plain loop, so results are identical.
        closes = prices if len(prices) == self._lookback else list(prices)[-self._lookback :]
        n = self._lookback
        sma = sum(closes) / n
        if price == sma:
            return None
        # A signal needs the price beyond a band, |price - sma| > k * std. math.dist
        # gives sqrt(sum((p - sma)^2)) in C to within a few ulps; the plain sum below
        # is within (n + 2) ulps of the same value while no square under- or
        # overflows (hence the range), so with a relative margin of 1e-9 and an
        # absolute one of 1e-12 of the prices (both far wider than the two
        # computations can differ, and than the band's own roundings), a price
        # clearly inside the band is inside the exact one too: no RSI, no std needed.
        spread = dist(closes, [sma] * n)
        if _BAND_RANGE[0] < spread < _BAND_RANGE[1] and (
            abs(price - sma) + _BAND_SLACK * (sma + price)
            < self._k * spread / self._sqrt_dof * _BAND_NARROWED
        ):
            return None
        strength = _rsi_of(state.changes)
        wants: Side | None = None
        if price < sma and strength < self._oversold:
            wants = "BUY"
        elif price > sma and strength > self._overbought:
            wants = "SELL"
        if wants is None:
            return None
        std = math.sqrt(sum([(p - sma) * (p - sma) for p in closes]) / (n - 1))
        upper = sma + self._k * std
        lower = sma - self._k * std
        side: Side
        if wants == "BUY" and price < lower:
            side = "BUY"
            confidence = (
                (self._oversold - strength) / self._oversold + min(1.0, (lower - price) / (self._k * std))
            ) / 2
        elif wants == "SELL" and price > upper:
            side = "SELL"
            confidence = (
                (strength - self._overbought) / (100.0 - self._overbought)
                + min(1.0, (price - upper) / (self._k * std))
            ) / 2
        else:
            return None
        metadata = {"rsi": strength, "sma": sma, "std": std, "upper": upper, "lower": lower}
        return Decision(side, self._size, min(1.0, confidence), metadata)


class MeanReversion(EdgeTriggered[MeanReversionRule]):
    """Mean reversion as the framework runs it: :class:`MeanReversionRule`, edge-triggered.

    ``on_price(state, price)`` returns a :class:`Decision` only when the
    wanted side changes, not on every tick while the condition holds.
    """

    rule_type = MeanReversionRule

    def __init__(self, config: MeanReversionConfig) -> None:
        super().__init__(config)
