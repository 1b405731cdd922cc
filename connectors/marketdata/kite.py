"""Zerodha KiteTicker WebSocket client: subscribe, stream ticks, reconnect.

Input: credentials (``SecretStr``), instrument tokens and a mode. Output:
:meth:`KiteTickerFeed.stream`, an async iterator of ticks and dead-letter
records (see :mod:`connectors.marketdata.streaming`). Parsing is in
:mod:`connectors.marketdata.kite_protocol`; this module only does I/O.

After a drop (server close, network error, read timeout with no frame or
heartbeat) it reconnects with exponential backoff and jitter and
resubscribes every token in its last mode. An HTTP 403 on the handshake
(bad or expired access token) raises :class:`FeedAuthenticationError`.
The credentials travel only in the connection URL's query string, which is
never logged nor put in an error message.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal
from urllib.parse import urlencode, urlsplit

from pydantic import SecretStr
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from connectors.marketdata.backoff import Backoff, BackoffConfig
from connectors.marketdata.errors import (
    FeedAuthenticationError,
    FeedMessageError,
    MarketDataError,
)
from connectors.marketdata.kite_protocol import KiteText, decode_binary, decode_text
from connectors.marketdata.streaming import (
    Clock,
    FeedItem,
    poison_record,
    quiet_websocket_logger,
    utc_now,
)

Mode = Literal["ltp", "quote", "full"]
DEFAULT_URL: Final = "wss://ws.kite.trade"
_HTTP_FORBIDDEN: Final = 403
_LOG = logging.getLogger(__name__)
_WS_LOG = quiet_websocket_logger(__name__ + ".websocket")


@dataclass(frozen=True)
class KiteFeedConfig:
    """What to stream: tokens, mode, where from, how patiently.

    ``read_timeout_s``: seconds without any frame (Kite heartbeats every
    few seconds) after which the connection counts as dead.
    """

    api_key: SecretStr
    access_token: SecretStr
    tokens: tuple[int, ...]
    mode: Mode = "full"
    url: str = DEFAULT_URL
    symbols: Mapping[int, str] = field(default_factory=dict)
    read_timeout_s: float = 10.0
    backoff: BackoffConfig = field(default_factory=BackoffConfig)
    service_name: str = "market_feed.kite"

    def __post_init__(self) -> None:
        """Check the URL scheme early, before it is joined with the credentials."""
        if urlsplit(self.url).scheme not in ("ws", "wss"):
            msg = f"kite feed: url must be ws:// or wss://, got {self.url!r}"
            raise MarketDataError(msg)


def connect_url(base: str, api_key: SecretStr, access_token: SecretStr) -> str:
    """Return the ticker URL with Kite's ``api_key``/``access_token`` query (secret)."""
    query = urlencode(
        {"api_key": api_key.get_secret_value(), "access_token": access_token.get_secret_value()}
    )
    return f"{base}{'&' if '?' in base else '?'}{query}"


def subscribe_messages(modes: Mapping[int, Mode]) -> list[str]:
    """Return the JSON text frames that subscribe ``modes``' tokens and set their modes.

    Per mode: ``{"a": "subscribe", "v": [tokens]}`` then
    ``{"a": "mode", "v": [mode, [tokens]]}``.
    """
    by_mode: dict[Mode, list[int]] = {}
    for token, mode in modes.items():
        by_mode.setdefault(mode, []).append(token)
    messages = []
    for mode, tokens in by_mode.items():
        messages.append(json.dumps({"a": "subscribe", "v": tokens}))
        messages.append(json.dumps({"a": "mode", "v": [mode, tokens]}))
    return messages


def _log_text(message: KiteText) -> None:
    if message.type == "error":
        _LOG.warning("kite feed: server error message: %s", message.data)
    else:
        _LOG.info("kite feed: %s message received", message.type)


class KiteTickerFeed:
    """A reconnecting KiteTicker stream of ticks and dead letters.

    ``clock``: returns the UTC time a frame arrived (tick time when the
        packet has no exchange timestamp, and dead letters' time).
    ``sleep``: awaited with the backoff delay in seconds.
    ``rng``: jitter source.
    ``on_text``: called with each decoded text frame (order updates,
        errors); by default they are logged.
    """

    def __init__(
        self,
        config: KiteFeedConfig,
        *,
        clock: Clock = utc_now,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        on_text: Callable[[KiteText], None] = _log_text,
    ) -> None:
        self._config = config
        self._clock = clock
        self._sleep = sleep
        self._backoff = Backoff(config.backoff, rng) if rng else Backoff(config.backoff)
        self._on_text = on_text
        self._modes: dict[int, Mode] = dict.fromkeys(config.tokens, config.mode)
        self._ws: ClientConnection | None = None
        self.connections = 0
        """Successful connections so far (1 + reconnects)."""

    def __repr__(self) -> str:
        return f"KiteTickerFeed(url={self._config.url!r}, tokens={len(self._modes)})"

    async def subscribe(self, tokens: Iterable[int], mode: Mode) -> None:
        """Add ``tokens`` in ``mode``; sent now if connected, and on every reconnect."""
        added = dict.fromkeys(tokens, mode)
        self._modes.update(added)
        if self._ws is not None:
            for message in subscribe_messages(added):
                await self._ws.send(message)

    def handle(self, message: str | bytes) -> list[FeedItem]:
        """Turn one WebSocket message into ticks and dead letters (no I/O)."""
        now = self._clock()
        if isinstance(message, str):
            try:
                self._on_text(decode_text(message))
            except FeedMessageError as err:
                return [poison_record(err, now=now, service_name=self._config.service_name)]
            return []
        decoded = decode_binary(message, received_at=now, symbols=self._config.symbols)
        dead = [poison_record(err, now=now, service_name=self._config.service_name) for err in decoded.errors]
        for bad in decoded.errors:
            _LOG.warning("kite feed: dead-lettered a malformed packet: %s", bad)
        return [*decoded.ticks, *dead]

    async def stream(self) -> AsyncIterator[FeedItem]:
        """Connect, subscribe and yield items forever, reconnecting after drops.

        Raises:
            FeedAuthenticationError: the server refused the credentials.
            FeedGaveUpError: more consecutive failed connections than
                ``backoff.max_attempts``.
        """
        url = connect_url(self._config.url, self._config.api_key, self._config.access_token)
        while True:
            try:
                async for item in self._one_connection(url):
                    yield item
                reason = "server closed the connection"
            except InvalidURI:
                # The exception's text holds the URL, credentials included.
                msg = f"kite feed: invalid ticker url {self._config.url!r}"
                raise MarketDataError(msg) from None
            except InvalidStatus as err:
                status = err.response.status_code
                if status == _HTTP_FORBIDDEN:
                    msg = f"kite feed: {self._config.url} refused the credentials (HTTP 403)"
                    raise FeedAuthenticationError(msg) from None
                reason = f"handshake failed with HTTP {status}"
            except (ConnectionClosed, InvalidHandshake, OSError, TimeoutError) as err:
                reason = f"{type(err).__name__}: {err}"
            finally:
                self._ws = None
            delay = self._backoff.next_delay("kite feed reconnect")
            _LOG.warning(
                "kite feed: connection to %s lost (%s); reconnecting in %.2f s",
                self._config.url,
                reason,
                delay,
            )
            await self._sleep(delay)

    async def _one_connection(self, url: str) -> AsyncIterator[FeedItem]:
        async with connect(
            url,
            additional_headers={"X-Kite-Version": "3"},
            logger=_WS_LOG,
            open_timeout=self._config.read_timeout_s,
        ) as ws:
            self._ws = ws
            for request in subscribe_messages(self._modes):
                await ws.send(request)
            self.connections += 1
            self._backoff.reset()
            _LOG.info(
                "kite feed: connected to %s, subscribed %d token(s)",
                self._config.url,
                len(self._modes),
            )
            while True:
                message = await asyncio.wait_for(ws.recv(), self._config.read_timeout_s)
                for item in self.handle(message):
                    yield item
