"""Windowed price momentum: buy a rising instrument, sell a falling one.

Over the last ``lookback_period`` prices of one instrument, the current price
included, ``m = (p_now - p_oldest) / p_oldest``. The strategy wants to BUY
when ``m > momentum_threshold`` and to SELL when ``m < -momentum_threshold``,
with confidence ``min(1, 5 * |m|)``. :class:`MomentumRule` says so on every
tick the condition holds; :class:`Momentum` is the rule as the framework runs
it, edge-triggered (a signal when the wanted side changes).
"""

from __future__ import annotations

from array import array
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from operators.decision import Decision
from operators.money import to_decimal
from operators.parameters import build_config, require
from operators.strategy_api import EdgeTriggered, StrategyState
from schemas.events import Side

_NEAR = 1e-9
"""Relative distance from the threshold inside which the comparison is made exactly."""


@dataclass(frozen=True)
class MomentumConfig:
    """Parameters of the momentum strategy.

    ``lookback_period``: prices in the window, current included (>= 2).
    ``momentum_threshold``: fractional change that triggers (>= 0; 0.01 = 1 %).
    ``position_size``: shares per signal (> 0).
    """

    lookback_period: int = 20
    momentum_threshold: float = 0.01
    position_size: int = 100

    def __post_init__(self) -> None:
        """Reject values the strategy cannot run with."""
        require(self.lookback_period >= 2, self, "lookback_period", self.lookback_period, "an integer >= 2")
        require(
            self.momentum_threshold >= 0, self, "momentum_threshold", self.momentum_threshold, "a number >= 0"
        )
        require(self.position_size > 0, self, "position_size", self.position_size, "an integer > 0")

    @classmethod
    def from_parameters(cls, parameters: Mapping[str, Any]) -> MomentumConfig:
        """Build a config from a strategy's ``parameters`` mapping.

        Raises:
            ConfigError: unknown name, wrong type or out-of-range value.
        """
        return build_config(cls, parameters)


@dataclass(slots=True)
class MomentumState(StrategyState):
    """One instrument's momentum state for one strategy.

    ``prices``: the most recent prices, at most ``lookback_period`` of them,
    as doubles in a ring. While it fills they are oldest first; once full,
    ``prices[head]`` is the oldest and a new price overwrites it (no float
    objects kept, and one small block per instrument: at 10,000 instruments
    a third of a deque's memory). :meth:`window` gives them oldest first.
    ``active``: the framework's edge (the side signalled last while it is
    still wanted).
    """

    prices: array[float]
    head: int = 0
    active: Side | None = None

    def window(self) -> list[float]:
        """The prices in the window, oldest first."""
        prices, head = self.prices, self.head
        return [*prices[head:], *prices[:head]]

    def copy(self) -> MomentumState:
        """Return a copy that shares no mutable data with this state."""
        return MomentumState(array("d", self.prices), self.head, self.active)

    def __getstate__(self) -> dict[str, Any]:
        return {"prices": self.prices, "head": self.head, "active": self.active}

    def __setstate__(self, state: dict[str, Any]) -> None:
        prices = state["prices"]
        if isinstance(prices, deque):  # a recovery snapshot from before the ring: oldest first
            prices = array("d", prices)
        self.prices = prices
        self.head = state.get("head", 0)
        self.active = state.get("active")


def _advance(state: MomentumState, price: float, lookback: int) -> float | None:
    """Put ``price`` in the window; return its oldest price, or None while it has fewer than ``lookback``."""
    prices = state.prices
    if len(prices) < lookback:
        prices.append(price)
        return prices[0] if len(prices) == lookback else None
    head = state.head
    prices[head] = price
    head = state.head = (head + 1) % lookback
    return prices[head]


class MomentumRule:
    """Momentum as a strategy: feed it prices, it says what it wants on every tick."""

    config_type = MomentumConfig

    def __init__(self, config: MomentumConfig) -> None:
        self.config = config
        self._lookback = config.lookback_period
        self._threshold = config.momentum_threshold
        self._size = config.position_size
        self._exact_threshold = to_decimal(float(config.momentum_threshold))
        # Returned while the side wanted is the one already signalled: the framework drops it.
        self._held = {
            "BUY": Decision("BUY", self._size, 0.0, {}),
            "SELL": Decision("SELL", self._size, 0.0, {}),
        }

    def _exact_side(self, price: float, oldest: float) -> Side | None:
        """The side in exact decimal arithmetic, for a change within float rounding of the threshold.

        Prices and the threshold are taken as the decimals they print as, so
        a move of exactly +1.000% is not above a 1% threshold.
        """
        change = to_decimal(price) - to_decimal(oldest)
        bound = self._exact_threshold * to_decimal(oldest)
        if change > bound:
            return "BUY"
        if change < -bound:
            return "SELL"
        return None

    def new_state(self) -> MomentumState:
        """Return the state of an instrument that has seen no prices yet."""
        return MomentumState(array("d"))

    def on_price(self, state: MomentumState, price: float) -> Decision | None:
        """Add ``price`` (> 0) to the window; return the side wanted now, or ``None``.

        ``None`` during warm-up (fewer than ``lookback_period`` prices) and
        when neither condition holds. ``metadata`` is ``{"momentum": m}``,
        except while the side wanted is the one already signalled
        (``state.active``): the framework drops that decision, so it comes
        without confidence or metadata.
        """
        oldest = _advance(state, price, self._lookback)
        if oldest is None:
            return None
        momentum = (price - oldest) / oldest
        threshold = self._threshold
        side: Side | None
        if abs(abs(momentum) - threshold) <= _NEAR * threshold:
            side = self._exact_side(price, oldest)
            if side is None:
                return None
        elif momentum > threshold:
            side = "BUY"
        elif momentum < -threshold:
            side = "SELL"
        else:
            return None
        if side == state.active:
            return self._held[side]
        confidence = min(1.0, 5.0 * abs(momentum))
        return Decision(side, self._size, confidence, {"momentum": momentum})

    def edge_triggered(self) -> Callable[[MomentumState, float], Decision | None]:
        """:meth:`on_price` and the framework's edge in one frame: one call a tick instead of two.

        The function returns exactly what :class:`EdgeTriggered` makes of
        :meth:`on_price` (a decision only when the wanted side changes, and
        ``state.active`` kept the same way); the hot path runs it on every
        tick of every momentum instrument.
        """
        lookback = self._lookback
        threshold = self._threshold
        # The band of on_price's exact comparison, as bounds: below `inside` neither side is
        # wanted, above `outside` the sign's side is. At the bounds, a relative 1e-9 from the
        # threshold, floats and decimals agree, so an ulp either way changes no decision.
        inside = threshold - _NEAR * threshold
        outside = threshold + _NEAR * threshold
        size = self._size
        exact_side = self._exact_side

        def on_price(state: MomentumState, price: float) -> Decision | None:
            # _advance, inline: the ring's step is most of the work on most ticks.
            prices = state.prices
            if len(prices) < lookback:
                prices.append(price)
                if len(prices) < lookback:
                    state.active = None
                    return None  # warming up
                oldest = prices[0]
            else:
                head = state.head
                prices[head] = price
                head += 1
                if head == lookback:
                    head = 0
                state.head = head
                oldest = prices[head]
            momentum = (price - oldest) / oldest
            side: Side | None = None
            if -inside < momentum < inside:
                pass  # most ticks: neither side
            elif momentum > outside:
                side = "BUY"
            elif momentum < -outside:
                side = "SELL"
            else:
                side = exact_side(price, oldest)
            if side is None:
                if state.active is not None:
                    state.active = None
                return None
            if side == state.active:
                return None
            state.active = side
            return Decision(side, size, min(1.0, 5.0 * abs(momentum)), {"momentum": momentum})

        return on_price


class Momentum(EdgeTriggered[MomentumRule]):
    """Momentum as the framework runs it: :class:`MomentumRule`, edge-triggered.

    ``on_price(state, price)`` returns a :class:`Decision` only when the
    wanted side changes, not on every tick while the condition holds
    (:meth:`MomentumRule.edge_triggered`, the two steps in one frame).
    """

    rule_type = MomentumRule

    def __init__(self, config: MomentumConfig) -> None:
        super().__init__(config)
        self.on_price = self.rule.edge_triggered()
