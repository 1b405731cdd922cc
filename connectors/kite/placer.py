"""The live order placer: ``(order_id, ValidatedSignal) -> Kite status``, idempotent by tag.

This is the callable :class:`dataflows.execution_routes.ExecutionRoute` takes as
``live_placer``; the executor retries it per :data:`connectors.kite.errors.KITE_RULES`.
One call:

1. refuses while the account is halted, the strategy is not
   ``zerodha_trading_enabled``, the token is not in ``instruments``, the
   notional exceeds the cap or the day's order count is reached
   (``KiteGuardError`` / ``KiteInstrumentError``: business, not retried);
2. looks up the day's Kite orders for the order's tag and, if one exists
   (a retry after a timeout, a replayed signal), returns its status
   without placing another; when we tried this order before and Kite does
   not show it yet, it looks once more after ``confirm_s``; an order first
   attempted on an earlier day is never sent again (Kite's book covers
   only today);
3. records the intent in Postgres, places the order (rate-limited), and
   returns ``SUBMITTED``.

An expired token (``KiteTokenError``) calls ``on_authentication_failure``
(which halts the broker and alerts) and propagates: the executor
dead-letters the signal as ``authentication``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Final

from connectors.kite.client import KiteClient
from connectors.kite.errors import KiteGuardError, KiteInstrumentError, KiteTokenError
from connectors.kite.protocol import IST, KiteOrder
from connectors.kite.store import OrderIntent, ZerodhaStore
from connectors.marketdata.instruments import Instrument
from operators.halts import HaltFlags
from schemas.events import ValidatedSignal

log = logging.getLogger(__name__)

BROKER: Final = "zerodha"
TAG_PREFIX: Final = "ap"
TAG_LENGTH: Final = 20
SUBMITTED: Final = "SUBMITTED"


def order_tag(order_id: str) -> str:
    """Kite's ``tag`` (<= 20 characters) of our order: ``ap`` + 18 hex digits of the order id.

    Order ids are UUIDv5s; 72 bits of one keep two orders of a day apart
    (collision odds ~1e-16 at 10,000 orders).
    """
    digits = order_id.replace("-", "").lower()
    return (TAG_PREFIX + digits)[:TAG_LENGTH]


def trading_day(moment: datetime) -> date:
    """The Indian trading day (IST date) of ``moment``."""
    return moment.astimezone(IST).date()


@dataclass(frozen=True)
class StrategyOrders:
    """How one strategy's live orders are placed."""

    enabled: bool
    product: str = "MIS"
    order_type: str = "MARKET"


@dataclass(frozen=True)
class PlacerConfig:
    """Guards of live orders: notional cap (rupees) and orders per IST day."""

    max_order_notional: Decimal = Decimal(100_000)
    max_daily_orders: int = 100
    confirm_s: float = 1.0
    """A retried order whose tag is not in the book yet is looked up once more
    after this long before it is placed: Kite may still be processing the
    request that timed out."""


class KiteOrderPlacer:
    """Places one validated signal as a Kite regular order; see the module docstring."""

    def __init__(  # each is an injected dependency
        self,
        client: KiteClient,
        store: ZerodhaStore,
        config: PlacerConfig,
        *,
        strategy_orders: Callable[[str], StrategyOrders | None],
        halts: HaltFlags | None = None,
        on_authentication_failure: Callable[[BaseException], None] = lambda _err: None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = client
        self._store = store
        self._config = config
        self._strategy_orders = strategy_orders
        self._halts = halts
        self._on_auth = on_authentication_failure
        self._now = now
        self._sleep = sleep
        self._instruments: dict[int, Instrument] = {}

    def __call__(self, order_id: str, data: ValidatedSignal) -> str:
        """Place (or find) the order; return its Kite status, ``SUBMITTED`` when just placed."""
        try:
            return self._place(order_id, data)
        except KiteTokenError as err:
            self._on_auth(err)
            raise

    def _instrument(self, order_id: str, token: int) -> Instrument:
        found = self._instruments.get(token)
        if found is None:
            found = self._store.instrument(token)
            if found is None:
                msg = (
                    f"zerodha live order {order_id}: instrument token {token} is not in the "
                    "instruments table (alpha-panda instruments load); refusing to trade it"
                )
                raise KiteInstrumentError(msg)
            self._instruments[token] = found
        return found

    def _guard(self, order_id: str, data: ValidatedSignal) -> StrategyOrders:
        signal = data.original_signal
        if self._halts is not None and (reason := self._halts.reason(BROKER, signal.strategy_id)):
            msg = f"zerodha live order {order_id}: {reason}"
            raise KiteGuardError(msg)
        orders = self._strategy_orders(signal.strategy_id)
        if orders is None or not orders.enabled:
            msg = (
                f"zerodha live order {order_id}: strategy {signal.strategy_id!r} "
                "is not zerodha_trading_enabled"
            )
            raise KiteGuardError(msg)
        notional = Decimal(str(data.validated_price)) * data.validated_quantity
        if notional > self._config.max_order_notional:
            msg = (
                f"zerodha live order {order_id}: notional {notional:.2f} exceeds "
                f"ZERODHA_MAX_ORDER_NOTIONAL {self._config.max_order_notional}"
            )
            raise KiteGuardError(msg)
        return orders

    def _existing(self, tag: str) -> KiteOrder | None:
        for order in self._client.orders():
            if order.tag == tag:
                return order
        return None

    def _place(self, order_id: str, data: ValidatedSignal) -> str:
        signal = data.original_signal
        orders = self._guard(order_id, data)
        instrument = self._instrument(order_id, signal.instrument_token)
        tag = order_tag(order_id)
        earlier = self._store.intents([tag]).get(tag)
        tried_before = earlier is not None
        existing = self._existing(tag)
        if existing is None and tried_before and self._config.confirm_s > 0:
            self._sleep(self._config.confirm_s)
            existing = self._existing(tag)
        if existing is not None:
            log.info(
                "zerodha order %s already at Kite as %s (%s); not placed again",
                order_id,
                existing.order_id,
                existing.status,
            )
            self._store.set_kite_order_id(tag, existing.order_id)
            return existing.status
        day = trading_day(self._now())
        if earlier is not None and earlier.trading_day != day:
            # Kite's order book holds only today's orders: we cannot tell whether
            # the earlier attempt reached the exchange, so never send it again.
            msg = (
                f"zerodha live order {order_id}: first attempted on {earlier.trading_day}; "
                "not placed again on a later day (check Kite's order history by its tag)"
            )
            raise KiteGuardError(msg)
        limit = orders.order_type == "LIMIT"
        intent = OrderIntent(
            tag=tag,
            order_id=order_id,
            strategy_id=signal.strategy_id,
            instrument_token=signal.instrument_token,
            exchange=instrument.exchange,
            tradingsymbol=instrument.tradingsymbol,
            side=signal.signal_type,
            quantity=data.validated_quantity,
            product=orders.product,
            order_type=orders.order_type,
            price=_tick_round(data.validated_price, instrument.tick_size) if limit else None,
            trading_day=day,
        )
        if not tried_before:
            if self._store.orders_on(day) >= self._config.max_daily_orders:
                msg = (
                    f"zerodha live order {order_id}: {self._config.max_daily_orders} orders already "
                    f"placed on {day} (ZERODHA_MAX_DAILY_ORDERS)"
                )
                raise KiteGuardError(msg)
            self._store.record_intent(intent)
        kite_order_id = self._client.place_order(
            exchange=intent.exchange,
            tradingsymbol=intent.tradingsymbol,
            transaction_type=intent.side,
            quantity=intent.quantity,
            product=intent.product,
            order_type=intent.order_type,
            price=intent.price,
            validity="DAY",
            tag=tag,
        )
        self._store.set_kite_order_id(tag, kite_order_id)
        log.info("zerodha order %s placed as Kite order %s (tag %s)", order_id, kite_order_id, tag)
        return SUBMITTED


def _tick_round(price: float, tick_size: float) -> float:
    """``price`` on the instrument's tick grid (Kite refuses other LIMIT prices)."""
    if tick_size <= 0:
        return round(price, 2)
    tick = Decimal(str(tick_size))
    return float((Decimal(str(price)) / tick).to_integral_value() * tick)
