"""What a strategy wants to do on one tick."""

from __future__ import annotations

from typing import Literal, NamedTuple


class Decision(NamedTuple):
    """A strategy's wish to trade one instrument at the current tick.

    ``side`` is ``"BUY"`` or ``"SELL"``; ``quantity`` is in shares (> 0);
    ``confidence`` is in [0, 1]; ``metadata`` carries the indicator values
    that led to the decision (e.g. ``{"momentum": 0.015}``). The price and
    time are those of the tick the strategy was fed, so they are not repeated.
    """

    side: Literal["BUY", "SELL"]
    quantity: int
    confidence: float
    metadata: dict[str, float]
