"""What the streaming clients (Kite, Alpaca) share: items, clocks, quiet logs.

A stream yields :data:`FeedItem` values: good ticks, and ``dlq_record``
envelopes for messages that could not become ticks (to publish on
``market.ticks.dlq``). Neither ever stops the stream.

:func:`tick_message` turns a tick into the producer form of ``market.ticks``
(``{"type": "market_tick", "data": {...}}``), the same bytes a tick file
holds, so every feed's ticks pass the one contract decoder
(:func:`schemas.codec.decode_tick`) and get the same deterministic ids.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeAlias

import msgspec

from connectors.marketdata.errors import FeedMessageError, KiteProtocolError
from schemas.codec import RawMessage, poison_letter
from schemas.envelope import DlqEnvelope
from schemas.events import MarketTick
from schemas.topics import MARKET_TICKS, tick_key

FeedItem: TypeAlias = MarketTick | DlqEnvelope
Clock: TypeAlias = Callable[[], datetime]


def utc_now() -> datetime:
    """Return the current UTC time; the default clock of the live feeds."""
    return datetime.now(UTC)


_encoder = msgspec.json.Encoder()


def tick_message(tick: MarketTick) -> bytes:
    """Return ``tick`` as producer-form JSON bytes for ``market.ticks``.

    In: a tick (prices in quote currency, ``timestamp`` exchange time).
    Out: ``{"type": "market_tick", "data": {...}}`` (UTF-8, no newline),
    which :func:`schemas.codec.decode_tick` validates and completes.
    """
    return _encoder.encode({"type": "market_tick", "data": tick})


def quiet_websocket_logger(name: str) -> logging.Logger:
    """Return a logger for the ``websockets`` library that never emits DEBUG.

    ``websockets`` logs the handshake request line (Kite's credentials are
    in its query string) and every frame (Alpaca's auth message) at DEBUG,
    so this logger is pinned at INFO whatever the root level is.
    """
    logger = logging.getLogger(name)
    logger.setLevel(logging.INFO)
    return logger


def poison_record(
    err: KiteProtocolError | FeedMessageError, *, now: datetime, service_name: str
) -> DlqEnvelope:
    """Dead-letter the bytes behind ``err`` for topic ``market.ticks`` as poison."""
    raw = err.packet if isinstance(err, KiteProtocolError) else err.raw
    token = err.token if isinstance(err, KiteProtocolError) else None
    key = tick_key(token).encode() if token else None
    return poison_letter(
        RawMessage(MARKET_TICKS, key, raw),
        error_class=type(err).__name__,
        error_message=str(err),
        service_name=service_name,
        dlq_timestamp=now,
    )
