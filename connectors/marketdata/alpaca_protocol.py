"""Pure parsers of Alpaca market-data messages (stream and REST bars). No I/O.

Stream messages are JSON arrays of objects tagged by ``"T"``:

- ``"t"`` trade: ``S`` symbol, ``p`` price, ``s`` size, ``t`` RFC-3339 time
  -> tick with ``last_price = p``, ``volume = s``;
- ``"q"`` quote: ``bp``/``bs`` bid price/size, ``ap``/``as`` ask -> tick with
  ``last_price`` the mid (or the one positive side) and a one-level
  ``depth``;
- ``"b"`` bar (also ``"d"`` daily, ``"u"`` updated): ``o h l c v``, ``t`` the
  bar start -> tick with ``last_price = c`` and ``ohlc``;
- ``"success"``, ``"error"`` (``code``, ``msg``), ``"subscription"``:
  control messages, returned as they are.

Symbols become instrument tokens through a caller-given ``token_of``
(default :func:`connectors.marketdata.instruments.stable_token`).
REST bars (``GET /v2/stocks/bars``) are ``{"bars": {SYMBOL: [{t,o,h,l,c,v}]},
"next_page_token": str | null}``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from connectors.marketdata.bars import Bar
from connectors.marketdata.errors import (
    FeedMessageError,
    HistoryFormatError,
    ResponseShapeError,
)
from schemas.events import MarketTick, Ohlc

TokenOf = Callable[[str], int]
CONTROL_TYPES: Final = frozenset({"success", "error", "subscription"})
_STEP: Final = "parse alpaca message"


@dataclass(frozen=True, slots=True)
class ParsedMessage:
    """One stream message: ticks, control objects, and one error per bad element."""

    ticks: tuple[MarketTick, ...]
    controls: tuple[dict[str, Any], ...]
    errors: tuple[FeedMessageError, ...]


def _time(element: dict[str, Any], step: str) -> datetime:
    text = element.get("t")
    if not isinstance(text, str):
        msg = f"{step}: 't' must be an RFC-3339 string, got {text!r}"
        raise ValueError(msg)
    return datetime.fromisoformat(text)


def _num(element: dict[str, Any], name: str) -> float:
    value = element.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        msg = f"{name!r} must be a number, got {value!r}"
        raise ValueError(msg)
    return float(value)


def _quote_tick(element: dict[str, Any], token: int, symbol: str) -> MarketTick:
    bid, ask = _num(element, "bp"), _num(element, "ap")
    sides = [p for p in (bid, ask) if p > 0]
    mid = sum(sides) / len(sides) if sides else 0.0
    depth = {
        "buy": [{"price": bid, "quantity": int(_num(element, "bs")), "orders": 0}],
        "sell": [{"price": ask, "quantity": int(_num(element, "as")), "orders": 0}],
    }
    return MarketTick(
        instrument_token=token,
        last_price=mid,
        timestamp=_time(element, "quote"),
        symbol=symbol,
        depth=depth,
    )


def element_to_tick(element: dict[str, Any], token_of: TokenOf) -> MarketTick:
    """Turn one trade, quote or bar object into a tick.

    Raises:
        ValueError: a missing or wrong-typed field, or a price not > 0.
    """
    kind = element.get("T")
    symbol = element.get("S")
    if not isinstance(symbol, str) or not symbol:
        msg = f"'S' must be a symbol string, got {symbol!r}"
        raise ValueError(msg)
    token = token_of(symbol)
    if kind == "t":
        return MarketTick(
            instrument_token=token,
            last_price=_num(element, "p"),
            timestamp=_time(element, "trade"),
            volume=int(_num(element, "s")),
            symbol=symbol,
        )
    if kind == "q":
        return _quote_tick(element, token, symbol)
    if kind in ("b", "d", "u"):
        ohlc = Ohlc(*(_num(element, name) for name in ("o", "h", "l", "c")))
        return MarketTick(
            instrument_token=token,
            last_price=ohlc.close,
            timestamp=_time(element, "bar"),
            volume=int(_num(element, "v")),
            symbol=symbol,
            ohlc=ohlc,
        )
    msg = f"unknown message type T={kind!r}"
    raise ValueError(msg)


def parse_stream_message(text: str | bytes, token_of: TokenOf) -> ParsedMessage:
    """Parse one stream message (a JSON array) into ticks, controls and errors.

    A message that is not a JSON array is one error; a bad element is one
    error and does not affect the others.
    """
    try:
        message = json.loads(text)
    except ValueError as err:
        return ParsedMessage((), (), (FeedMessageError(_STEP, f"not JSON ({err})", text),))
    if isinstance(message, dict):
        message = [message]
    if not isinstance(message, list):
        reason = f"expected a JSON array, got {type(message).__name__}"
        return ParsedMessage((), (), (FeedMessageError(_STEP, reason, text),))
    ticks: list[MarketTick] = []
    controls: list[dict[str, Any]] = []
    errors: list[FeedMessageError] = []
    for element in message:
        if isinstance(element, dict) and element.get("T") in CONTROL_TYPES:
            controls.append(element)
            continue
        if not isinstance(element, dict):
            reason = f"element must be an object, got {element!r:.80}"
            errors.append(FeedMessageError(_STEP, reason, json.dumps(element)))
            continue
        try:
            ticks.append(element_to_tick(element, token_of))
        except (ValueError, TypeError) as err:
            errors.append(FeedMessageError(_STEP, str(err), json.dumps(element)))
    return ParsedMessage(tuple(ticks), tuple(controls), tuple(errors))


def parse_bars_page(
    payload: Any, token_of: TokenOf, *, step: str = "parse alpaca bars"
) -> tuple[list[Bar], str | None]:
    """Parse one page of ``GET /v2/stocks/bars``: its bars and ``next_page_token``.

    Raises:
        ResponseShapeError: ``bars`` is missing or not an object of lists,
            or a bar lacks ``t``/``o``/``h``/``l``/``c``/``v``.
    """
    if not isinstance(payload, dict) or "bars" not in payload:
        raise ResponseShapeError(step, "bars", "is missing")
    raw_bars = payload["bars"] or {}
    if not isinstance(raw_bars, dict):
        raise ResponseShapeError(step, "bars", f"must map symbol -> list, got {raw_bars!r:.80}")
    bars: list[Bar] = []
    for symbol, rows in raw_bars.items():
        if not isinstance(rows, list):
            raise ResponseShapeError(step, f"bars.{symbol}", "must be a list")
        token = token_of(symbol)
        for index, row in enumerate(rows):
            try:
                bars.append(
                    Bar(
                        instrument_token=token,
                        timestamp=_time(row, "bar"),
                        open=_num(row, "o"),
                        high=_num(row, "h"),
                        low=_num(row, "l"),
                        close=_num(row, "c"),
                        volume=int(_num(row, "v")),
                        symbol=symbol,
                        source="alpaca",
                    )
                )
            except (ValueError, TypeError, AttributeError, HistoryFormatError) as err:
                raise ResponseShapeError(step, f"bars.{symbol}[{index}]", str(err)) from err
    next_token = payload.get("next_page_token")
    if next_token is not None and not isinstance(next_token, str):
        raise ResponseShapeError(step, "next_page_token", f"must be a string, got {next_token!r}")
    return bars, next_token or None
