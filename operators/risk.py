"""Pre-trade risk checks for one account (one strategy at one broker).

Every signal is checked against five rules, all evaluated every time:

- ``max_position_size``: |position after this order| <= limit, the position
  counting every earlier validated order of this account;
- ``max_daily_trades``: validated orders on the signal's exchange date
  (``signal.timestamp.date()`` in the timestamp's own offset) stay <= limit;
- ``max_price_deviation``: |signal price − latest tick| / latest tick <= limit;
- ``sufficient_cash``: a BUY's estimated cost (fill notional after slippage
  plus commission) is covered by the account's cash;
- ``no_short_selling``: a SELL does not exceed the position held.

A signal failing any rule is rejected with a reason naming each failing rule
with its value and limit; the state is untouched. A passing signal is
validated and its estimated effect applied to the account.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Final

from operators.costs import Costs, build_with_costs
from operators.dedupe import RecentIds
from operators.money import to_decimal
from operators.parameters import require
from schemas.events import RejectedSignal, TradingSignal, ValidatedSignal

BOOKED_KEPT = 2048
"""Orders per account whose booking risk remembers for a failure reported later."""

RULES = (
    "max_position_size",
    "max_daily_trades",
    "max_price_deviation",
    "sufficient_cash",
    "no_short_selling",
)
_ALL_PASSED: Final = dict.fromkeys(RULES, True)
"""``risk_checks`` of a signal that passed every rule (copied per signal)."""
"""Rule names, in the order reasons list them."""
_NO_AGE: Final = timedelta(0)
"""The lowest mark age risk accepts: a mark from the signal's future never judges it."""


def halted_rejection(signal: TradingSignal, reason: str) -> RejectedSignal:
    """The rejection of a signal of a halted broker or strategy (rule ``halted``; ``alpha-panda halt``)."""
    checks = dict.fromkeys(RULES, True)
    checks["halted"] = False
    return RejectedSignal(
        original_signal=signal, rejection_reason=reason, risk_checks=checks, timestamp=signal.timestamp
    )


@dataclass(frozen=True)
class RiskConfig:
    """Limits of one account.

    ``max_position_size``: shares, absolute, per instrument (>= 0).
    ``max_daily_trades``: validated orders per exchange date (>= 0).
    ``max_price_deviation``: fraction of the latest tick price (>= 0; 0.10 = 10 %).
    ``max_mark_age``: how much older than a signal (event time) a tick may be
    and still count as its latest price; a staler or a later tick is not
    compared, and the signal's own price stands in.
    ``starting_cash``: account currency (>= 0).
    ``costs``: slippage and commission, to estimate a signal's cash (the
    fill simulator's :class:`operators.costs.Costs`; flat ``slippage_bps``
    and ``commission_bps`` in ``from_parameters``).
    """

    max_position_size: int = 1000
    max_daily_trades: int = 50
    max_price_deviation: float = 0.10
    max_mark_age: timedelta = timedelta(seconds=5)
    starting_cash: Decimal = Decimal("1000000")
    costs: Costs = Costs()

    def __post_init__(self) -> None:
        """Reject negative limits."""
        for name in (
            "max_position_size",
            "max_daily_trades",
            "max_price_deviation",
            "starting_cash",
        ):
            value = getattr(self, name)
            require(value >= 0, self, name, value, "a number >= 0")
        require(self.max_mark_age >= timedelta(0), self, "max_mark_age", self.max_mark_age, "a duration >= 0")

    @classmethod
    def from_parameters(cls, parameters: Mapping[str, Any]) -> RiskConfig:
        """Build a config from a parameter mapping (money as number or string).

        Raises:
            ConfigError: unknown name, wrong type or negative value.
        """
        return build_with_costs(cls, parameters)


@dataclass
class RiskState:
    """One account's risk view.

    ``cash``: estimated cash after every validated order (account currency).
    ``positions``: shares per instrument token after every validated order.
    ``trade_date``/``trades_today``: validated orders on the latest exchange date.
    ``last_prices``: latest tick price per instrument token, with its event time.
    ``seen_signals``: ids of recently decided signals, so a redelivered signal
    (at-least-once transport) is not counted twice.
    """

    cash: Decimal
    positions: dict[int, int]
    trade_date: date | None
    trades_today: int
    last_prices: dict[int, tuple[float, datetime | None]]
    seen_signals: RecentIds = field(default_factory=RecentIds)
    booked: dict[str, ValidatedSignal] = field(default_factory=dict)
    """Validated orders by order id (the last :data:`BOOKED_KEPT`), released if they fail later."""

    def copy(self) -> RiskState:
        """Return a copy that shares no mutable data with this state."""
        return RiskState(
            self.cash,
            dict(self.positions),
            self.trade_date,
            self.trades_today,
            dict(self.last_prices),
            self.seen_signals.copy(),
            dict(self.booked),
        )


class RiskFilter:
    """Risk checks for one account: feed it ticks and signals."""

    def __init__(self, config: RiskConfig) -> None:
        self.config = config

    def new_state(self) -> RiskState:
        """Return an account with the starting cash, no positions, no trades."""
        return RiskState(self.config.starting_cash, {}, None, 0, {})

    def on_mark(self, state: RiskState, token: int, price: float, at: datetime | None = None) -> None:
        """Record ``price`` (tick time ``at``) as the latest price of instrument ``token``."""
        state.last_prices[token] = (price, at)

    def _deviates(self, price: float, last: float, deviation: float) -> bool:
        """Whether ``price`` is more than ``max_price_deviation`` from ``last``, exactly at the boundary."""
        limit = self.config.max_price_deviation
        if abs(deviation - limit) > 1e-9 * max(limit, 1e-12):
            return deviation > limit
        return abs(to_decimal(price) - to_decimal(last)) > to_decimal(float(limit)) * to_decimal(last)

    def _reference_price(self, state: RiskState, signal: TradingSignal) -> float:
        """The latest tick price known at the signal's event time, or the signal's own.

        Event time, not arrival order, decides: when ticks and signals come
        from separate topics (per-stage flows), a tick from the signal's
        future or a stale one must not judge it.
        """
        mark = state.last_prices.get(signal.instrument_token)
        if mark is None:
            return signal.price
        price, at = mark
        if at is None:
            return price
        age = signal.timestamp - at
        return price if _NO_AGE <= age <= self.config.max_mark_age else signal.price

    def on_signal(self, state: RiskState, signal: TradingSignal) -> ValidatedSignal | RejectedSignal:
        """Check ``signal`` against every rule.

        Returns a :class:`ValidatedSignal` (quantity and price unchanged,
        ``risk_checks`` all true) and applies the order to ``state``, or a
        :class:`RejectedSignal` whose ``rejection_reason`` joins one
        ``"<rule>: <value> <limit>"`` part per failing rule with ``"; "``,
        leaving ``state`` unchanged. Both carry the signal's timestamp.
        """
        cfg = self.config
        token = signal.instrument_token
        quantity = signal.quantity
        buying = signal.signal_type == "BUY"
        held = state.positions.get(token, 0)
        after = held + quantity if buying else held - quantity
        trade_date = signal.timestamp.date()
        # A later date starts a new count; a late signal from an earlier date
        # is conservatively counted against the latest date seen.
        new_day = state.trade_date is None or trade_date > state.trade_date
        trades = 0 if new_day else state.trades_today
        last = self._reference_price(state, signal)
        deviation = abs(signal.price - last) / last
        price = to_decimal(signal.price)
        fill = cfg.costs.fill_price(signal.signal_type, price) * quantity
        fees = cfg.costs.fees(fill)
        cost = fill + fees if buying else Decimal(0)

        failures: list[str] = []
        checks = dict(_ALL_PASSED)
        if abs(after) > cfg.max_position_size:
            checks["max_position_size"] = False
            failures.append(f"max_position_size: position {abs(after)} would exceed {cfg.max_position_size}")
        if trades >= cfg.max_daily_trades:
            checks["max_daily_trades"] = False
            failures.append(
                f"max_daily_trades: trade {trades + 1} on {trade_date.isoformat()} "
                f"would exceed {cfg.max_daily_trades}"
            )
        if self._deviates(signal.price, last, deviation):
            checks["max_price_deviation"] = False
            failures.append(
                f"max_price_deviation: price {signal.price} is {deviation:.2%} from last "
                f"{last}, limit {cfg.max_price_deviation:.2%}"
            )
        if buying and cost > state.cash:
            checks["sufficient_cash"] = False
            failures.append(f"sufficient_cash: cost {cost:.2f} exceeds cash {state.cash:.2f}")
        if not buying and quantity > held:
            checks["no_short_selling"] = False
            failures.append(f"no_short_selling: selling {quantity} exceeds position {held}")

        if failures:
            return RejectedSignal(
                original_signal=signal,
                rejection_reason="; ".join(failures),
                risk_checks=checks,
                timestamp=signal.timestamp,
            )
        state.positions[token] = after
        state.cash = state.cash - cost if buying else state.cash + (fill - fees)
        if new_day:
            state.trade_date = trade_date
        state.trades_today = trades + 1
        return ValidatedSignal(
            original_signal=signal,
            validated_quantity=quantity,
            validated_price=signal.price,
            risk_checks=checks,
            timestamp=signal.timestamp,
        )

    def book(self, state: RiskState, order_id: str, validated: ValidatedSignal) -> None:
        """Remember what ``order_id`` booked, so that its failure, reported later, releases it."""
        booked = state.booked
        booked[order_id] = validated
        if len(booked) > BOOKED_KEPT:
            del booked[next(iter(booked))]

    def release_order(self, state: RiskState, order_id: str, quantity: int | None = None) -> bool:
        """Release a booked order that failed; False if unknown or released already (a redelivery).

        ``quantity``: the shares that failed (the unfilled rest of a partly
        filled order); None releases the whole order.
        """
        validated = state.booked.pop(order_id, None)
        if validated is None:
            return False
        self.release(state, validated, quantity)
        return True

    def release(self, state: RiskState, validated: ValidatedSignal, quantity: int | None = None) -> None:
        """Undo what validating ``validated`` booked: its order failed or was cancelled.

        The position, the estimated cash and the daily trade count return to
        what they would be had the signal never been validated (the count
        only while the order's exchange date is still the latest one).
        ``quantity`` (at most the validated quantity) releases only that many
        shares: the rest of the order was filled, so its trade still counts.
        """
        cfg = self.config
        signal = validated.original_signal
        token = signal.instrument_token
        whole = validated.validated_quantity
        quantity = whole if quantity is None else max(0, min(quantity, whole))
        buying = signal.signal_type == "BUY"
        fill = cfg.costs.fill_price(signal.signal_type, to_decimal(validated.validated_price)) * quantity
        fees = cfg.costs.fees(fill)
        held = state.positions.get(token, 0)
        state.positions[token] = held - quantity if buying else held + quantity
        state.cash = state.cash + fill + fees if buying else state.cash - (fill - fees)
        if quantity == whole and state.trade_date == signal.timestamp.date() and state.trades_today > 0:
            state.trades_today -= 1
