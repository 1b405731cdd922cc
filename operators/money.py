"""Money maths shared by the risk filter, the fill simulator and the portfolio.

All money is :class:`decimal.Decimal`. Prices arrive as floats on the wire and
are converted with :func:`to_decimal`, which goes through ``repr`` so that
``101.5`` becomes exactly ``Decimal("101.5")`` rather than the float's binary
expansion.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Final, Literal

BPS: Final = Decimal(10_000)
"""Basis points per unit: 1 bp = 1/10 000."""


_DECIMALS: dict[float, Decimal] = {}
_DECIMALS_KEPT: Final = 1 << 16


def to_decimal(value: float) -> Decimal:
    """Return the Decimal that prints like ``value`` (never ``Decimal(float)``).

    Prices repeat (they move in ticks), so conversions are remembered: a
    pure function's cache, bounded, the same result whatever it holds.
    """
    cached = _DECIMALS.get(value)
    if cached is None:
        if len(_DECIMALS) >= _DECIMALS_KEPT:
            _DECIMALS.clear()
        cached = _DECIMALS[value] = Decimal(repr(value))
    return cached


def slipped_price(side: Literal["BUY", "SELL"], price: Decimal, slippage_bps: Decimal) -> Decimal:
    """Return the fill price of an order at ``price`` after slippage.

    A BUY pays ``price * (1 + bps/1e4)``, a SELL receives ``price * (1 - bps/1e4)``.
    """
    if side == "BUY":
        return price * (1 + slippage_bps / BPS)
    return price * (1 - slippage_bps / BPS)


def commission(notional: Decimal, commission_bps: Decimal) -> Decimal:
    """Return the commission on ``notional`` (money) at ``commission_bps``."""
    return notional * commission_bps / BPS
