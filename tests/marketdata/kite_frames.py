"""Build KiteTicker binary frames from the documented layout, for test servers."""

from __future__ import annotations

import struct
from collections.abc import Sequence


def frame(*packets: bytes) -> bytes:
    """2-byte count, then each packet with its 2-byte length."""
    out = struct.pack(">H", len(packets))
    for packet in packets:
        out += struct.pack(">H", len(packet)) + packet
    return out


def ltp(token: int, last: int) -> bytes:
    return struct.pack(">Ii", token, last)


def index_quote(token: int, last: int, high: int, low: int, open_: int, close: int) -> bytes:
    return struct.pack(">Iiiiiii", token, last, high, low, open_, close, last - close)


def index_full(token: int, last: int, high: int, low: int, open_: int, close: int, ts: int) -> bytes:
    return index_quote(token, last, high, low, open_, close) + struct.pack(">I", ts)


def quote(
    token: int,
    last: int,
    *,
    volume: int,
    ohlc: tuple[int, int, int, int],
    last_qty: int = 5,
    avg: int = 0,
    buy_qty: int = 100,
    sell_qty: int = 200,
) -> bytes:
    return struct.pack(">IiIiIIIiiii", token, last, last_qty, avg, volume, buy_qty, sell_qty, *ohlc)


def full(
    token: int,
    last: int,
    *,
    volume: int,
    ohlc: tuple[int, int, int, int],
    ts: int,
    depth: Sequence[tuple[int, int, int]],
    last_trade_time: int = 0,
    oi: int = 0,
) -> bytes:
    assert len(depth) == 10
    out = quote(token, last, volume=volume, ohlc=ohlc)
    out += struct.pack(">IIIII", last_trade_time, oi, oi, oi, ts)
    for qty, price, orders in depth:
        out += struct.pack(">IiHxx", qty, price, orders)
    assert len(out) == 184
    return out
