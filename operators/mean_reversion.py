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
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
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


@dataclass
class MeanReversionState(StrategyState):
    """One instrument's mean-reversion state for one strategy.

    ``prices``: the most recent prices, oldest first, at most
    ``max(lookback_period, rsi_period + 1)``. ``changes``: the last
    ``rsi_period`` price changes (kept so a tick costs one subtraction).
    ``active``: the framework's edge (the side signalled last while it is
    still wanted).
    """

    prices: deque[float]
    changes: deque[float]
    active: Side | None = None

    def copy(self) -> MeanReversionState:
        """Return a copy that shares no mutable data with this state."""
        return MeanReversionState(
            deque(self.prices, maxlen=self.prices.maxlen),
            deque(self.changes, maxlen=self.changes.maxlen),
            self.active,
        )


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

    def new_state(self) -> MeanReversionState:
        """Return the state of an instrument that has seen no prices yet."""
        return MeanReversionState(deque(maxlen=self._window), deque(maxlen=self._rsi_period))

    def on_price(self, state: MeanReversionState, price: float) -> Decision | None:
        """Add ``price`` (> 0) to the window; return the side wanted now, or ``None``.

        ``None`` during warm-up (fewer than ``max(lookback_period,
        rsi_period + 1)`` prices) and when neither condition holds.
        ``metadata`` holds ``rsi``, ``sma``, ``std``, ``upper`` and ``lower``
        (prices).
        """
        prices = state.prices
        if prices:
            state.changes.append(price - prices[-1])
        prices.append(price)
        if len(prices) < self._window:
            return None
        # Cheap necessary conditions first; the exact band only when they hold.
        # Sums run in the same order as a plain loop, so results are identical.
        closes = prices if len(prices) == self._lookback else list(prices)[-self._lookback :]
        n = self._lookback
        sma = sum(closes) / n
        if price == sma:
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
