"""Typed errors of the market-data connectors, all under :class:`MarketDataError`.

Every message names the step that failed and the offending value. None of
them ever carries an API key, access token or secret.
"""

from __future__ import annotations

from schemas.errors import AlphaPandaError


class MarketDataError(AlphaPandaError):
    """Root of every market-data connector error."""


class KiteProtocolError(MarketDataError):
    """A KiteTicker frame or packet does not follow the documented layout.

    ``packet`` holds the offending bytes (the whole frame when the framing
    itself is broken) so the feed can dead-letter them; ``token`` is the
    instrument token when it could be read, else ``None``.
    """

    def __init__(self, step: str, reason: str, packet: bytes, token: int | None = None) -> None:
        self.step = step
        self.reason = reason
        self.packet = packet
        self.token = token
        super().__init__(f"kite {step}: {reason}")


class KiteFrameError(KiteProtocolError):
    """The frame header or packet lengths are inconsistent; no packet is trusted."""


class KitePacketError(KiteProtocolError):
    """One packet is malformed (unknown length, bad price); its neighbours are fine."""


class FeedMessageError(MarketDataError):
    """A text message of a stream (Kite or Alpaca) is not the documented JSON."""

    def __init__(self, step: str, reason: str, raw: str | bytes) -> None:
        self.step = step
        self.reason = reason
        self.raw = raw.encode("utf-8") if isinstance(raw, str) else raw
        super().__init__(f"{step}: {reason}")


class FeedAuthenticationError(MarketDataError):
    """The provider refused the credentials; retrying will not help."""


class FeedGaveUpError(MarketDataError):
    """A stream lost its connection more times in a row than it may retry."""


class HttpStatusError(MarketDataError):
    """An HTTP call returned a status the caller does not handle."""

    def __init__(self, step: str, status: int, body: str) -> None:
        self.step = step
        self.status = status
        self.body = body[:300]
        super().__init__(f"{step}: HTTP {status}: {self.body!r}")


class RateLimitedError(MarketDataError):
    """The provider answered HTTP 429; ``retry_after`` is its hint in seconds (or None)."""

    def __init__(self, step: str, retry_after: float | None) -> None:
        self.step = step
        self.retry_after = retry_after
        hint = f"retry after {retry_after:g} s" if retry_after is not None else "no Retry-After"
        super().__init__(f"{step}: rate limited (HTTP 429, {hint})")


class SymbolNotFoundError(MarketDataError):
    """The provider does not know ``symbol``."""

    def __init__(self, step: str, symbol: str, detail: str) -> None:
        self.step = step
        self.symbol = symbol
        super().__init__(f"{step}: unknown symbol {symbol!r}: {detail}")


class ResponseShapeError(MarketDataError):
    """A response lacks a field the documented shape has, or has it wrongly typed."""

    def __init__(self, step: str, field: str, detail: str) -> None:
        self.step = step
        self.field = field
        super().__init__(f"{step}: response field {field!r} {detail}")


class InstrumentError(MarketDataError):
    """An instrument-master row is malformed, or a name resolves to no instrument."""


class HistoryFormatError(MarketDataError):
    """A bar history file or row cannot be read; names the file, line and field."""


class HttpTransportError(MarketDataError):
    """An HTTP call failed below HTTP: refused connection, DNS, TLS or timeout."""


class FeedConfigError(MarketDataError):
    """A feed is selected without what it needs (credentials, tokens, symbols)."""


class HistoryStoreError(MarketDataError):
    """The bar history store (PostgreSQL ``market_data``) cannot be read or written."""
