"""Channel breakout: buy a new high, sell a new low.

A complete example of the strategy interface (:mod:`operators.strategy_api`).

The channel is the highest and lowest of the ``lookback_period`` prices
*before* the current one. Once the channel is full, the strategy wants to
BUY while the price is above its high and to SELL while it is below its
low, and nothing inside it; the framework signals each breakout once.
Confidence is ``min(1, 100 * distance beyond the channel / price)``.

Use it with ``strategy_type: "examples.strategies.breakout:Breakout"``
(the repository root on ``PYTHONPATH``), or register it as an entry point.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from operators.decision import Decision
from operators.parameters import require
from operators.strategy_api import StrategyState


@dataclass(frozen=True)
class BreakoutConfig:
    """``lookback_period``: prices in the channel (>= 1); ``position_size``: shares per signal (> 0)."""

    lookback_period: int = 20
    position_size: int = 100

    def __post_init__(self) -> None:
        """Reject values the strategy cannot run with (a ConfigError naming the parameter)."""
        require(self.lookback_period >= 1, self, "lookback_period", self.lookback_period, "an integer >= 1")
        require(self.position_size > 0, self, "position_size", self.position_size, "an integer > 0")


@dataclass
class BreakoutState(StrategyState):
    """The previous prices of one instrument, oldest first (at most ``lookback_period``)."""

    prices: deque[float] = field(default_factory=deque)

    def copy(self) -> BreakoutState:
        """Return a copy with its own window."""
        return BreakoutState(deque(self.prices, maxlen=self.prices.maxlen))


class Breakout:
    """The breakout strategy: prices in, the side wanted out."""

    config_type = BreakoutConfig

    def __init__(self, config: BreakoutConfig) -> None:
        self.config = config

    def new_state(self) -> BreakoutState:
        """Return the state of an instrument that has seen no prices."""
        return BreakoutState(deque(maxlen=self.config.lookback_period))

    def on_price(self, state: BreakoutState, price: float) -> Decision | None:
        """Compare ``price`` with the channel of the prices before it, then add it.

        ``None`` until ``lookback_period`` earlier prices exist, and inside
        the channel. ``metadata``: ``high`` and ``low`` of the channel.
        """
        window = state.prices
        decision = None
        if len(window) == window.maxlen:
            high, low = max(window), min(window)
            if price > high:
                decision = Decision(
                    "BUY",
                    self.config.position_size,
                    min(1.0, 100.0 * (price - high) / price),
                    {"high": high, "low": low},
                )
            elif price < low:
                decision = Decision(
                    "SELL",
                    self.config.position_size,
                    min(1.0, 100.0 * (low - price) / price),
                    {"high": high, "low": low},
                )
        window.append(price)
        return decision
