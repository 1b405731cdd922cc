"""The OHLCV bar every historical source produces, and its tick form.

A :class:`Bar` is one instrument over one interval: ``timestamp`` is the
interval's start in UTC (as Alpaca and Yahoo label bars), prices are in the
instrument's quote currency, ``volume`` in shares/units traded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from connectors.marketdata.errors import HistoryFormatError
from schemas.envelope import as_utc
from schemas.events import MarketTick, Ohlc


@dataclass(frozen=True, slots=True)
class Bar:
    """One OHLCV bar of one instrument (prices in quote currency, UTC start time)."""

    instrument_token: int
    timestamp: datetime
    open: float
    high: float
    low: float
    close: float
    volume: int
    symbol: str | None = None
    source: str = ""

    def __post_init__(self) -> None:
        """Reject bars no market could print: non-finite or non-positive prices."""
        if self.instrument_token <= 0:
            msg = f"bar: instrument_token must be > 0, got {self.instrument_token!r}"
            raise HistoryFormatError(msg)
        for name in ("open", "high", "low", "close"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                msg = f"bar {self._label()}: {name} must be finite and > 0, got {value!r}"
                raise HistoryFormatError(msg)
        if self.volume < 0:
            msg = f"bar {self._label()}: volume must be >= 0, got {self.volume!r}"
            raise HistoryFormatError(msg)
        object.__setattr__(self, "timestamp", as_utc(self.timestamp))

    def _label(self) -> str:
        return f"{self.symbol or self.instrument_token} at {self.timestamp.isoformat()}"

    def to_tick(self) -> MarketTick:
        """Return the bar as a tick: ``last_price`` is the close, time is the bar's start."""
        return MarketTick(
            instrument_token=self.instrument_token,
            last_price=self.close,
            timestamp=self.timestamp,
            volume=self.volume,
            symbol=self.symbol,
            ohlc=Ohlc(open=self.open, high=self.high, low=self.low, close=self.close),
        )
