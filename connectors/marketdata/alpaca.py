"""Alpaca market data: the real-time stream client and historical bars over HTTP.

Symbols -> instrument tokens: Alpaca has no numeric ids, so every function
takes ``token_of`` (symbol -> token), by default
:func:`connectors.marketdata.instruments.stable_token`, which maps a symbol
to ``2**48 + 48 bits of SHA-256`` of it: stable across processes, releases
and machines, and disjoint from Kite's tokens. Pass ``{"AAPL": 1}.__getitem__``
(or any function) to use your own numbering.

Stream (:class:`AlpacaStreamFeed`): connect to the feed URL (``.../v2/iex``
or ``.../v2/sip``), wait for ``connected``, send ``{"action": "auth",
"key", "secret"}``, wait for ``authenticated``, send ``{"action":
"subscribe", "trades", "quotes", "bars"}``, then yield ticks and dead
letters (see :mod:`connectors.marketdata.streaming`). After a drop it
reconnects with backoff and jitter, authenticates and resubscribes. Auth
failures (codes 402 auth failed, 409 insufficient subscription) raise
:class:`FeedAuthenticationError`; connection-limit (406) and others retry.

History (:func:`fetch_alpaca_bars`): ``GET {data_url}/v2/stocks/bars``
following ``next_page_token`` until it is null, waiting out HTTP 429.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from pydantic import SecretStr
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from connectors.marketdata.alpaca_protocol import (
    TokenOf,
    parse_bars_page,
    parse_stream_message,
)
from connectors.marketdata.backoff import Backoff, BackoffConfig
from connectors.marketdata.bars import Bar
from connectors.marketdata.errors import (
    FeedAuthenticationError,
    HttpStatusError,
    MarketDataError,
)
from connectors.marketdata.http_client import HTTP_OK, get_with_rate_limit_retry
from connectors.marketdata.instruments import stable_token
from connectors.marketdata.streaming import (
    Clock,
    FeedItem,
    poison_record,
    quiet_websocket_logger,
    utc_now,
)
from schemas.envelope import as_utc

DEFAULT_STREAM_URL: Final = "wss://stream.data.alpaca.markets/v2/iex"
DEFAULT_DATA_URL: Final = "https://data.alpaca.markets"
FATAL_CODES: Final = frozenset({401, 402, 409})
_HTTP_AUTH_FAILED: Final = frozenset({401, 403})
_LOG = logging.getLogger(__name__)
_WS_LOG = quiet_websocket_logger(__name__ + ".websocket")

Adjustment = Literal["raw", "split", "dividend", "all"]


@dataclass(frozen=True)
class AlpacaFeedConfig:
    """What to stream: symbols per channel, feed URL, token mapping, patience.

    ``read_timeout_s`` None relies on WebSocket pings to notice a dead link
    (quiet symbols may not trade for minutes).
    """

    api_key: SecretStr
    secret_key: SecretStr
    trades: tuple[str, ...] = ()
    quotes: tuple[str, ...] = ()
    bars: tuple[str, ...] = ()
    url: str = DEFAULT_STREAM_URL
    token_of: TokenOf = stable_token
    read_timeout_s: float | None = None
    open_timeout_s: float = 10.0
    backoff: BackoffConfig = field(default_factory=BackoffConfig)
    service_name: str = "market_feed.alpaca"

    def __post_init__(self) -> None:
        """Check the URL scheme and that something is subscribed."""
        if urlsplit(self.url).scheme not in ("ws", "wss"):
            msg = f"alpaca feed: url must be ws:// or wss://, got {self.url!r}"
            raise MarketDataError(msg)
        if not (self.trades or self.quotes or self.bars):
            msg = "alpaca feed: no trades, quotes or bars to subscribe"
            raise MarketDataError(msg)


def subscribe_message(config: AlpacaFeedConfig) -> str:
    """Return the ``subscribe`` action for the config's channels."""
    return json.dumps(
        {
            "action": "subscribe",
            "trades": list(config.trades),
            "quotes": list(config.quotes),
            "bars": list(config.bars),
        }
    )


class AlpacaStreamFeed:
    """A reconnecting Alpaca market-data stream of ticks and dead letters.

    ``clock``: UTC time for dead letters.
    ``sleep``: awaited with each backoff delay (seconds).
    ``rng``: jitter source.
    """

    def __init__(
        self,
        config: AlpacaFeedConfig,
        *,
        clock: Clock = utc_now,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._config = config
        self._clock = clock
        self._sleep = sleep
        self._backoff = Backoff(config.backoff, rng) if rng else Backoff(config.backoff)
        self.connections = 0
        """Successfully authenticated and subscribed connections so far."""

    def __repr__(self) -> str:
        return f"AlpacaStreamFeed(url={self._config.url!r})"

    def handle(self, message: str | bytes) -> list[FeedItem]:
        """Turn one stream message into ticks and dead letters (no I/O).

        Raises:
            FeedAuthenticationError: an ``error`` control with a fatal code.
        """
        parsed = parse_stream_message(message, self._config.token_of)
        for control in parsed.controls:
            self._control(control)
        now = self._clock()
        dead = [poison_record(err, now=now, service_name=self._config.service_name) for err in parsed.errors]
        for err in parsed.errors:
            _LOG.warning("alpaca feed: dead-lettered a malformed message: %s", err)
        return [*parsed.ticks, *dead]

    def _control(self, control: dict[str, Any]) -> None:
        if control.get("T") != "error":
            _LOG.info("alpaca feed: %s %s", control.get("T"), control.get("msg", ""))
            return
        code, text = control.get("code"), control.get("msg")
        if code in FATAL_CODES:
            msg = f"alpaca feed: {self._config.url} refused us: error {code} {text!r}"
            raise FeedAuthenticationError(msg)
        _LOG.warning("alpaca feed: server error %s %r", code, text)

    async def stream(self) -> AsyncIterator[FeedItem]:
        """Connect, authenticate, subscribe and yield items forever, reconnecting.

        Raises:
            FeedAuthenticationError: credentials or plan refused.
            FeedGaveUpError: more consecutive failed connections than
                ``backoff.max_attempts``.
        """
        while True:
            try:
                async for item in self._one_connection():
                    yield item
                reason = "server closed the connection"
            except InvalidURI:
                msg = f"alpaca feed: invalid stream url {self._config.url!r}"
                raise MarketDataError(msg) from None
            except InvalidStatus as err:
                status = err.response.status_code
                if status in _HTTP_AUTH_FAILED:
                    msg = f"alpaca feed: {self._config.url} refused us (HTTP {status})"
                    raise FeedAuthenticationError(msg) from None
                reason = f"handshake failed with HTTP {status}"
            except (ConnectionClosed, InvalidHandshake, OSError, TimeoutError) as err:
                reason = f"{type(err).__name__}: {err}"
            delay = self._backoff.next_delay("alpaca feed reconnect")
            _LOG.warning(
                "alpaca feed: connection to %s lost (%s); reconnecting in %.2f s",
                self._config.url,
                reason,
                delay,
            )
            await self._sleep(delay)

    async def _await_success(self, ws: ClientConnection, wanted: str) -> list[FeedItem]:
        """Read until a ``success`` control says ``wanted``; keep any ticks seen."""
        items: list[FeedItem] = []
        while True:
            raw = await asyncio.wait_for(ws.recv(), self._config.open_timeout_s)
            parsed = parse_stream_message(raw, self._config.token_of)
            if any(c.get("T") == "success" and c.get("msg") == wanted for c in parsed.controls):
                return items
            items.extend(self.handle(raw))

    async def _one_connection(self) -> AsyncIterator[FeedItem]:
        config = self._config
        async with connect(config.url, logger=_WS_LOG, open_timeout=config.open_timeout_s) as ws:
            await self._await_success(ws, "connected")
            await ws.send(
                json.dumps(
                    {
                        "action": "auth",
                        "key": config.api_key.get_secret_value(),
                        "secret": config.secret_key.get_secret_value(),
                    }
                )
            )
            await self._await_success(ws, "authenticated")
            await ws.send(subscribe_message(config))
            self.connections += 1
            self._backoff.reset()
            _LOG.info("alpaca feed: connected to %s and subscribed", config.url)
            while True:
                raw = await asyncio.wait_for(ws.recv(), config.read_timeout_s)
                for item in self.handle(raw):
                    yield item


def _rfc3339(moment: datetime) -> str:
    return as_utc(moment).isoformat().replace("+00:00", "Z")


def fetch_alpaca_bars(  # one argument per query parameter
    symbols: Iterable[str],
    start: datetime,
    end: datetime,
    timeframe: str = "1Day",
    adjustment: Adjustment = "raw",
    *,
    api_key: SecretStr,
    secret_key: SecretStr,
    base_url: str = DEFAULT_DATA_URL,
    feed: str = "iex",
    page_limit: int = 10_000,
    token_of: TokenOf = stable_token,
    rate_limit_retries: int = 5,
    sleep: Callable[[float], None] = time.sleep,
    timeout_s: float = 30.0,
) -> list[Bar]:
    """Return every bar of ``symbols`` in ``[start, end]``, all pages followed.

    ``timeframe``: Alpaca timeframe, e.g. ``1Min``, ``15Min``, ``1Hour``, ``1Day``.
    ``adjustment``: ``raw``, ``split``, ``dividend`` or ``all``.
    ``feed``: ``iex`` (free) or ``sip``.

    Returns:
        bars in the order Alpaca sends them (by symbol, then time),
        ``timestamp`` the bar start in UTC, prices in USD, volume in shares.

    Raises:
        FeedAuthenticationError: HTTP 401/403.
        RateLimitedError: still HTTP 429 after ``rate_limit_retries`` waits.
        HttpStatusError: another non-200 answer.
        ResponseShapeError: a page lacks a documented field.
    """
    step = "fetch alpaca bars"
    names = sorted({s.strip().upper() for s in symbols if s.strip()})
    params = {
        "symbols": ",".join(names),
        "timeframe": timeframe,
        "start": _rfc3339(start),
        "end": _rfc3339(end),
        "adjustment": adjustment,
        "feed": feed,
        "limit": str(page_limit),
    }
    headers = {
        "APCA-API-KEY-ID": api_key.get_secret_value(),
        "APCA-API-SECRET-KEY": secret_key.get_secret_value(),
    }
    url = f"{base_url.rstrip('/')}/v2/stocks/bars"
    bars: list[Bar] = []
    page_token: str | None = None
    while True:
        query = {**params, "page_token": page_token} if page_token else params
        response = get_with_rate_limit_retry(
            step,
            url,
            params=query,
            headers=headers,
            timeout_s=timeout_s,
            rate_limit_retries=rate_limit_retries,
            sleep=sleep,
        )
        if response.status in _HTTP_AUTH_FAILED:
            msg = f"{step}: {base_url} refused the API key (HTTP {response.status})"
            raise FeedAuthenticationError(msg)
        if response.status != HTTP_OK:
            raise HttpStatusError(step, response.status, response.text())
        page, page_token = parse_bars_page(response.json(step), token_of, step=step)
        bars.extend(page)
        if page_token is None:
            return bars
