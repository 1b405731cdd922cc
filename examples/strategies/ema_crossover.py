"""EMA crossover: hold the side of the fast exponential average against the slow one.

A complete example of the strategy interface (:mod:`operators.strategy_api`).

Both averages start at the first price and then follow
``ema = ema + alpha * (price - ema)`` with ``alpha = 2 / (period + 1)``. From
the ``slow_period``-th price on, the strategy wants to BUY while the fast
average is above the slow one and to SELL while it is below; it says so on
every tick, and the framework turns that into one signal per crossover.
Confidence is ``min(1, 100 * |fast - slow| / slow)`` (a 1 % gap is full
confidence).

Use it with ``strategy_type: "examples.strategies.ema_crossover:EmaCrossover"``
(the repository root on ``PYTHONPATH``), or register it as an entry point.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from operators.decision import Decision
from operators.parameters import require
from operators.strategy_api import StrategyState


@dataclass(frozen=True)
class EmaCrossoverConfig:
    """``fast_period`` < ``slow_period``: EMA spans in prices (>= 1); ``position_size``: shares per signal."""

    fast_period: int = 12
    slow_period: int = 26
    position_size: int = 100

    def __post_init__(self) -> None:
        """Reject values the strategy cannot run with (a ConfigError naming the parameter)."""
        require(self.fast_period >= 1, self, "fast_period", self.fast_period, "an integer >= 1")
        require(
            self.slow_period > self.fast_period,
            self,
            "slow_period",
            self.slow_period,
            f"above fast_period ({self.fast_period})",
        )
        require(self.position_size > 0, self, "position_size", self.position_size, "an integer > 0")


@dataclass
class EmaCrossoverState(StrategyState):
    """Both averages of one instrument and how many prices they have seen."""

    fast: float = 0.0
    slow: float = 0.0
    seen: int = 0

    def copy(self) -> EmaCrossoverState:
        """Return a copy (plain numbers: nothing to alias)."""
        return EmaCrossoverState(self.fast, self.slow, self.seen)


class EmaCrossover:
    """The EMA crossover strategy: prices in, the side wanted out."""

    config_type = EmaCrossoverConfig

    def __init__(self, config: EmaCrossoverConfig) -> None:
        self.config = config
        self._fast_alpha = 2.0 / (config.fast_period + 1)
        self._slow_alpha = 2.0 / (config.slow_period + 1)

    def new_state(self) -> EmaCrossoverState:
        """Return the state of an instrument that has seen no prices."""
        return EmaCrossoverState()

    def on_price(self, state: EmaCrossoverState, price: float) -> Decision | None:
        """Update both averages with ``price``; BUY while fast > slow, SELL while fast < slow.

        ``None`` before the ``slow_period``-th price and while they are equal.
        ``metadata``: ``fast`` and ``slow`` (prices).
        """
        if state.seen == 0:
            state.fast = state.slow = price
        else:
            state.fast += self._fast_alpha * (price - state.fast)
            state.slow += self._slow_alpha * (price - state.slow)
        state.seen += 1
        if state.seen < self.config.slow_period or state.fast == state.slow:
            return None
        side = "BUY" if state.fast > state.slow else "SELL"
        confidence = min(1.0, 100.0 * abs(state.fast - state.slow) / state.slow)
        return Decision(side, self.config.position_size, confidence, {"fast": state.fast, "slow": state.slow})

    def on_prices(self, state: EmaCrossoverState, prices: Sequence[float]) -> list[Decision | None]:
        """The batch step: the same decisions as :meth:`on_price` over ``prices`` in order."""
        return [self.on_price(state, price) for price in prices]
