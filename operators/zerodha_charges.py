"""Zerodha's equity charges on one executed order: brokerage, STT, exchange, SEBI, GST, stamp duty.

Pure and exact (``Decimal``; rupees). The default :class:`ChargesSchedule`
is Zerodha's published equity schedule (NSE, 2024): intraday (``MIS``)
brokerage 0.03% capped at Rs 20 per executed order, delivery (``CNC``)
free; STT 0.025% on intraday sells, 0.1% on both sides of delivery;
exchange transaction charge 0.00297% (NSE); SEBI fee Rs 10 per crore;
GST 18% on brokerage + exchange + SEBI; stamp duty on buys, 0.003%
intraday and 0.015% delivery. Every figure is configurable; each component
is rounded to the paisa (half up) before summing.

Example: BUY 100 MIS at 1,000.00 (turnover 100,000): brokerage 20.00
(0.03% is 30, capped), STT 0.00, exchange 2.97, SEBI 0.10, GST 4.15
(18% of 23.07), stamp 3.00; total 30.22.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from decimal import ROUND_HALF_UP, Decimal
from typing import Final, Literal

from operators.errors import ConfigError

Product = Literal["MIS", "CNC"]
PAISA: Final = Decimal("0.01")


@dataclass(frozen=True)
class ChargesSchedule:
    """Rates as fractions of turnover (``0.0003`` = 0.03%), caps in rupees."""

    intraday_brokerage_rate: Decimal = Decimal("0.0003")
    intraday_brokerage_cap: Decimal = Decimal(20)
    delivery_brokerage_rate: Decimal = Decimal(0)
    delivery_brokerage_cap: Decimal = Decimal(0)
    intraday_stt_sell_rate: Decimal = Decimal("0.00025")
    delivery_stt_rate: Decimal = Decimal("0.001")
    exchange_txn_rate: Decimal = Decimal("0.0000297")
    sebi_rate: Decimal = Decimal("0.000001")
    gst_rate: Decimal = Decimal("0.18")
    intraday_stamp_buy_rate: Decimal = Decimal("0.00003")
    delivery_stamp_buy_rate: Decimal = Decimal("0.00015")

    def __post_init__(self) -> None:
        """Reject negative rates and caps."""
        for item in fields(self):
            value = getattr(self, item.name)
            if not isinstance(value, Decimal) or value < 0:
                msg = f"ChargesSchedule.{item.name} must be a Decimal >= 0, got {value!r}"
                raise ConfigError(msg)

    def with_overrides(self, overrides: Mapping[str, Decimal | str | float]) -> ChargesSchedule:
        """A copy with some rates replaced (e.g. from the ``ZERODHA_CHARGES`` setting).

        Raises:
            ConfigError: an unknown name or a bad value.
        """
        known = {item.name for item in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            msg = f"ChargesSchedule has no rate(s) {unknown}; known: {sorted(known)}"
            raise ConfigError(msg)
        try:
            values = {name: Decimal(str(value)) for name, value in overrides.items()}
        except ArithmeticError as err:
            msg = f"ChargesSchedule overrides must be numbers, got {dict(overrides)!r}"
            raise ConfigError(msg) from err
        return replace(self, **values)


@dataclass(frozen=True)
class Charges:
    """The charges of one executed order, each in rupees rounded to the paisa."""

    brokerage: Decimal
    stt: Decimal
    exchange: Decimal
    sebi: Decimal
    gst: Decimal
    stamp_duty: Decimal

    @property
    def total(self) -> Decimal:
        """Everything the order cost beyond its turnover."""
        return self.brokerage + self.stt + self.exchange + self.sebi + self.gst + self.stamp_duty


def _paise(value: Decimal) -> Decimal:
    return value.quantize(PAISA, rounding=ROUND_HALF_UP)


def order_charges(
    schedule: ChargesSchedule,
    *,
    product: Product,
    side: Literal["BUY", "SELL"],
    quantity: int,
    price: Decimal,
) -> Charges:
    """Return the charges of ``quantity`` shares executed at ``price`` (the average) on one order.

    In: the schedule, ``MIS`` (intraday) or ``CNC`` (delivery), the side,
    shares (> 0) and the average price in rupees (> 0). Out: :class:`Charges`.

    Raises:
        ConfigError: a non-positive quantity or price, or an unknown product.
    """
    if quantity <= 0 or price <= 0:
        msg = f"order_charges: quantity and price must be > 0, got {quantity} @ {price}"
        raise ConfigError(msg)
    if product not in ("MIS", "CNC"):
        msg = f"order_charges: product must be MIS or CNC, got {product!r}"
        raise ConfigError(msg)
    turnover = price * quantity
    intraday = product == "MIS"
    rate, cap = (
        (schedule.intraday_brokerage_rate, schedule.intraday_brokerage_cap)
        if intraday
        else (schedule.delivery_brokerage_rate, schedule.delivery_brokerage_cap)
    )
    brokerage = _paise(min(turnover * rate, cap) if cap > 0 else turnover * rate)
    if intraday:
        stt = _paise(turnover * schedule.intraday_stt_sell_rate) if side == "SELL" else Decimal("0.00")
    else:
        stt = _paise(turnover * schedule.delivery_stt_rate)
    exchange = _paise(turnover * schedule.exchange_txn_rate)
    sebi = _paise(turnover * schedule.sebi_rate)
    gst = _paise((brokerage + exchange + sebi) * schedule.gst_rate)
    stamp_rate = schedule.intraday_stamp_buy_rate if intraday else schedule.delivery_stamp_buy_rate
    stamp = _paise(turnover * stamp_rate) if side == "BUY" else Decimal("0.00")
    return Charges(brokerage, stt, exchange, sebi, gst, stamp)
