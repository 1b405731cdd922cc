"""Pure parser of Zerodha KiteTicker WebSocket messages. No I/O.

Binary frames (market data), per Kite Connect v3's documented layout, all
integers big-endian:

- a frame is a 2-byte packet count, then per packet a 2-byte length and the
  packet's bytes; a 1-byte frame is a heartbeat and carries nothing;
- a packet's length gives its mode: 8 LTP, 28 index quote, 32 index full,
  44 quote, 184 full (quote + last trade time, OI and 5+5 depth levels of
  ``quantity`` int32, ``price`` int32, ``orders`` int16 and 2 pad bytes);
- prices are int32 in the segment's smallest unit; the segment is the
  token's low byte and its divisor is 10,000,000 for CDS (3), 10,000 for
  BCD (6) and 100 for every other segment (paise);
- full packets carry the exchange timestamp as Unix seconds.

Text frames are JSON (order updates, errors, broadcast messages).

Output: :class:`schemas.events.MarketTick` with prices in rupees (or the
segment's currency), ``volume`` the day's traded volume (quote/full),
``ohlc`` the session's open/high/low/close and, in full mode, ``depth`` as
``{"buy": [{"quantity", "price", "orders"} x5], "sell": [...]}``.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from connectors.marketdata.errors import (
    FeedMessageError,
    KiteFrameError,
    KitePacketError,
    KiteProtocolError,
)
from schemas.events import MarketTick, Ohlc

SEGMENT_CDS: Final = 3
SEGMENT_BCD: Final = 6
SEGMENT_INDICES: Final = 9

LTP_LENGTH: Final = 8
INDEX_QUOTE_LENGTH: Final = 28
INDEX_FULL_LENGTH: Final = 32
QUOTE_LENGTH: Final = 44
FULL_LENGTH: Final = 184
DEPTH_LEVELS: Final = 5

_SPLIT: Final = "split frame"
_PARSE: Final = "parse packet"
_TEXT: Final = "decode text frame"

_COUNT: Final = struct.Struct(">H")
_LTP: Final = struct.Struct(">Ii")
# token, last, high, low, open, close, change (indices order ohlc as h, l, o, c)
_INDEX_QUOTE: Final = struct.Struct(">Iiiiiii")
_INDEX_TIMESTAMP: Final = struct.Struct(">I")
# token, last, last qty, avg price, volume, buy qty, sell qty, open, high, low, close
_QUOTE: Final = struct.Struct(">IiIiIIIiiii")
# last trade time, oi, oi day high, oi day low, exchange timestamp
_FULL_EXTRA: Final = struct.Struct(">IIIII")
_DEPTH_LEVEL: Final = struct.Struct(">IiHxx")


def price_divisor(instrument_token: int) -> int:
    """Return the number of price units per currency unit for a token's segment."""
    segment = instrument_token & 0xFF
    if segment == SEGMENT_CDS:
        return 10_000_000
    if segment == SEGMENT_BCD:
        return 10_000
    return 100


@dataclass(frozen=True, slots=True)
class KiteText:
    """A text frame: ``type`` (``order``, ``error``, ``message``...) and its ``data``."""

    type: str
    data: Any


@dataclass(frozen=True, slots=True)
class DecodedFrame:
    """What one binary frame held: good ticks, and one error per bad packet."""

    ticks: tuple[MarketTick, ...]
    errors: tuple[KiteProtocolError, ...]


def is_heartbeat(frame: bytes) -> bool:
    """Tell whether a binary frame is Kite's 1-byte keep-alive."""
    return len(frame) == 1


def split_packets(frame: bytes) -> list[bytes]:
    """Split a binary frame into its packets.

    Raises:
        KiteFrameError: the frame is shorter than its header or its
            packet lengths say, or has trailing bytes; the whole frame is bad.
    """
    if len(frame) < _COUNT.size:
        msg = f"frame of {len(frame)} byte(s) is too short for the 2-byte packet count"
        raise KiteFrameError(_SPLIT, msg, frame)
    (count,) = _COUNT.unpack_from(frame, 0)
    packets: list[bytes] = []
    offset = _COUNT.size
    for index in range(count):
        if offset + _COUNT.size > len(frame):
            msg = f"frame of {len(frame)} bytes ends before packet {index + 1}/{count}'s length"
            raise KiteFrameError(_SPLIT, msg, frame)
        (length,) = _COUNT.unpack_from(frame, offset)
        offset += _COUNT.size
        if offset + length > len(frame):
            msg = (
                f"packet {index + 1}/{count} declares {length} bytes but only "
                f"{len(frame) - offset} remain in the frame"
            )
            raise KiteFrameError(_SPLIT, msg, frame)
        packets.append(frame[offset : offset + length])
        offset += length
    if offset != len(frame):
        msg = f"{len(frame) - offset} trailing byte(s) after {count} packet(s)"
        raise KiteFrameError(_SPLIT, msg, frame)
    return packets


def _exchange_time(seconds: int, fallback: datetime) -> datetime:
    # Kite sends 0 before the first trade of the day; the caller's clock is
    # then the best we have.
    if seconds == 0:
        return fallback
    return datetime.fromtimestamp(seconds, tz=UTC)


def _last_price(packet: bytes, token: int, raw: int, divisor: int) -> float:
    if raw <= 0:
        msg = f"last_price must be > 0, got {raw} (raw units, divisor {divisor}) for token {token}"
        raise KitePacketError(_PARSE, msg, packet, token)
    return raw / divisor


def _depth(packet: bytes, divisor: int) -> dict[str, Any]:
    levels = []
    for index in range(2 * DEPTH_LEVELS):
        quantity, price, orders = _DEPTH_LEVEL.unpack_from(
            packet, QUOTE_LENGTH + _FULL_EXTRA.size + index * _DEPTH_LEVEL.size
        )
        levels.append({"quantity": quantity, "price": price / divisor, "orders": orders})
    return {"buy": levels[:DEPTH_LEVELS], "sell": levels[DEPTH_LEVELS:]}


def _parse_index(packet: bytes, received_at: datetime, symbol: str | None) -> MarketTick:
    token, last, high, low, open_, close, _change = _INDEX_QUOTE.unpack_from(packet, 0)
    divisor = price_divisor(token)
    timestamp = received_at
    if len(packet) == INDEX_FULL_LENGTH:
        (seconds,) = _INDEX_TIMESTAMP.unpack_from(packet, INDEX_QUOTE_LENGTH)
        timestamp = _exchange_time(seconds, received_at)
    return MarketTick(
        instrument_token=token,
        last_price=_last_price(packet, token, last, divisor),
        timestamp=timestamp,
        symbol=symbol,
        ohlc=Ohlc(open=open_ / divisor, high=high / divisor, low=low / divisor, close=close / divisor),
    )


def _parse_quote(packet: bytes, received_at: datetime, symbol: str | None) -> MarketTick:
    fields = _QUOTE.unpack_from(packet, 0)
    token, last, _last_qty, _avg, volume, _buy_qty, _sell_qty, open_, high, low, close = fields
    divisor = price_divisor(token)
    timestamp = received_at
    depth = None
    if len(packet) == FULL_LENGTH:
        *_, seconds = _FULL_EXTRA.unpack_from(packet, QUOTE_LENGTH)
        timestamp = _exchange_time(seconds, received_at)
        depth = _depth(packet, divisor)
    return MarketTick(
        instrument_token=token,
        last_price=_last_price(packet, token, last, divisor),
        timestamp=timestamp,
        volume=volume,
        symbol=symbol,
        ohlc=Ohlc(open=open_ / divisor, high=high / divisor, low=low / divisor, close=close / divisor),
        depth=depth,
    )


def parse_packet(
    packet: bytes, *, received_at: datetime, symbols: Mapping[int, str] | None = None
) -> MarketTick:
    """Parse one packet into a tick.

    ``received_at``: UTC time the frame arrived; the tick's timestamp when
        the packet carries no exchange time (LTP, quote, index quote).
    ``symbols``: optional token -> trading symbol, to fill ``symbol``.

    Raises:
        KitePacketError: unknown packet length, zero token, or a price
            that is not > 0.
    """
    length = len(packet)
    if length not in (LTP_LENGTH, INDEX_QUOTE_LENGTH, INDEX_FULL_LENGTH, QUOTE_LENGTH, FULL_LENGTH):
        token = int.from_bytes(packet[:4], "big") if length >= 4 else None
        msg = f"packet length {length} is none of the documented 8/28/32/44/184 bytes (token {token})"
        raise KitePacketError(_PARSE, msg, packet, token)
    (token,) = struct.unpack_from(">I", packet, 0)
    if token == 0:
        msg = "instrument_token is 0"
        raise KitePacketError(_PARSE, msg, packet, token)
    symbol = symbols.get(token) if symbols is not None else None
    if length == LTP_LENGTH:
        _, last = _LTP.unpack(packet)
        divisor = price_divisor(token)
        price = _last_price(packet, token, last, divisor)
        return MarketTick(instrument_token=token, last_price=price, timestamp=received_at, symbol=symbol)
    if length in (INDEX_QUOTE_LENGTH, INDEX_FULL_LENGTH):
        return _parse_index(packet, received_at, symbol)
    return _parse_quote(packet, received_at, symbol)


def decode_binary(
    frame: bytes, *, received_at: datetime, symbols: Mapping[int, str] | None = None
) -> DecodedFrame:
    """Decode a binary frame into ticks, keeping each bad packet as an error.

    A heartbeat decodes to no ticks and no errors. A broken frame header is
    one :class:`KiteFrameError` for the whole frame; a bad packet is one
    :class:`KitePacketError` and does not affect the other packets.
    """
    if is_heartbeat(frame):
        return DecodedFrame((), ())
    try:
        packets = split_packets(frame)
    except KiteFrameError as err:
        return DecodedFrame((), (err,))
    ticks: list[MarketTick] = []
    errors: list[KiteProtocolError] = []
    for packet in packets:
        try:
            ticks.append(parse_packet(packet, received_at=received_at, symbols=symbols))
        except KitePacketError as err:
            errors.append(err)
    return DecodedFrame(tuple(ticks), tuple(errors))


def decode_text(text: str | bytes) -> KiteText:
    """Decode a text frame such as ``{"type": "order", "data": {...}}``.

    Raises:
        FeedMessageError: not JSON, not an object, or no string ``type``.
    """
    try:
        message = json.loads(text)
    except ValueError as err:
        msg = f"not JSON ({err})"
        raise FeedMessageError(_TEXT, msg, text) from err
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        msg = f"expected an object with a string 'type', got {str(message)[:80]!r}"
        raise FeedMessageError(_TEXT, msg, text)
    return KiteText(type=message["type"], data=message.get("data"))
