"""Feed flow: a market-data source -> ``market.ticks`` (bad input -> ``market.ticks.dlq``).

``python -m bytewax.run dataflows.market_feed``. ``FEED_SOURCE`` picks the
source (default ``simulator``, or ``file`` when only ``FEED_FILE`` is set):

- ``simulator``: deterministic random walks timestamped from now;
  ``FEED_RATE`` ticks/s, ``FEED_INSTRUMENTS``, ``FEED_SEED``.
- ``file``: a tick file (JSONL/CSV, as ``alpha-panda replay`` reads);
  ``FEED_FILE``, ``FEED_RATE`` lines/s.
- ``kite``: the Zerodha KiteTicker WebSocket; ``FEED_TOKENS``, ``FEED_MODE``
  (ltp, quote, full), ``KITE_WS_URL``, ``KITE_API_KEY``, ``KITE_ACCESS_TOKEN``.
- ``alpaca``: the Alpaca market-data stream; ``FEED_SYMBOLS``,
  ``FEED_CHANNELS`` (trades, quotes, bars), ``ALPACA_STREAM_URL``,
  ``ALPACA_API_KEY``, ``ALPACA_SECRET_KEY``.
- ``postgres``: bar history from ``market_data`` in time order, close as
  ``last_price``; ``FEED_SPEED`` (1, 10, max), ``FEED_START``, ``FEED_END``,
  ``FEED_TOKENS``.

``FEED_LIMIT`` stops any source after that many ticks. ``FEED_TOKENS`` takes
instrument tokens and ``EXCHANGE:SYMBOL`` names (``NSE:INFY``), the names
resolved through the ``instruments`` table (``alpha-panda instruments load``).

Every tick becomes producer-form bytes (:func:`connectors.marketdata.streaming.tick_message`)
and passes the one contract decoder (:func:`dataflows.ingest.decode_ticks`),
so ids are the deterministic ``tick_id`` of the tick whichever the source,
and a tick the contract rejects is dead-lettered like a bad file line.
Ticks are published as full envelopes keyed by instrument token; the live
streams' own dead letters (malformed packets) go to ``market.ticks.dlq``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import bytewax.operators as op
import psycopg
from bytewax.dataflow import Dataflow, Stream
from pydantic import field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from connectors.errors import describe_error, redact_url
from connectors.feeds import HistorySource, PacedFileSource, PacedSimulatorSource, StreamFeedSource
from connectors.marketdata.alpaca import AlpacaFeedConfig, AlpacaStreamFeed
from connectors.marketdata.backfill import Speed, parse_speed
from connectors.marketdata.errors import FeedConfigError, HistoryStoreError, MarketDataError
from connectors.marketdata.instruments import InstrumentResolver
from connectors.marketdata.kite import KiteFeedConfig, KiteTickerFeed
from connectors.marketdata.store import lookup_instruments, stored_bars
from connectors.marketdata.streaming import FeedItem, tick_message
from connectors.simulator import MarketSpec
from dataflows import live
from dataflows.ingest import decode_ticks
from dataflows.metrics import DLQ_MESSAGES
from schemas.codec import RawMessage
from schemas.envelope import DlqEnvelope, Outbound, as_utc
from schemas.events import MarketTick
from schemas.topics import MARKET_TICKS, dlq_topic, tick_key

FeedSourceName = Literal["simulator", "file", "kite", "alpaca", "postgres"]
Channel = Literal["trades", "quotes", "bars"]


def _split(value: object) -> object:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


class FeedSettings(BaseSettings):
    """The market feed's source selection, read from the environment (``FEED_*``).

    Credentials and URLs stay in :class:`alpha_panda.settings.Settings`
    (``KITE_*``, ``ALPACA_*``), as do ``FEED_FILE``, ``FEED_RATE``,
    ``FEED_INSTRUMENTS``, ``FEED_LIMIT`` and ``FEED_SEED``.
    """

    model_config = SettingsConfigDict(frozen=True, extra="ignore", env_file=None)

    feed_source: FeedSourceName | None = None
    """``None``: ``file`` when ``FEED_FILE`` is set, else ``simulator``."""
    feed_tokens: Annotated[tuple[int | str, ...], NoDecode] = ()
    """Kite tokens or ``EXCHANGE:SYMBOL`` names (kite); a filter on history (postgres)."""
    feed_mode: Literal["ltp", "quote", "full"] = "full"
    feed_symbols: Annotated[tuple[str, ...], NoDecode] = ()
    feed_channels: Annotated[tuple[Channel, ...], NoDecode] = ("trades",)
    feed_speed: float | Literal["max"] = "max"
    """History replay speed: event time runs this many times real time."""
    feed_start: datetime | None = None
    """Inclusive lower bound on bar start times (naive = UTC)."""
    feed_end: datetime | None = None
    """Exclusive upper bound on bar start times (naive = UTC)."""

    @field_validator("feed_tokens", mode="before")
    @classmethod
    def _tokens(cls, value: object) -> object:
        parts = _split(value)
        if isinstance(parts, tuple | list):
            return tuple(int(p) if isinstance(p, str) and p.isdigit() else p for p in parts)
        return parts

    @field_validator("feed_symbols", mode="before")
    @classmethod
    def _symbols(cls, value: object) -> object:
        parts = _split(value)
        return tuple(str(p).upper() for p in parts) if isinstance(parts, tuple | list) else parts

    @field_validator("feed_channels", mode="before")
    @classmethod
    def _channels(cls, value: object) -> object:
        return _split(value)

    @field_validator("feed_speed", mode="before")
    @classmethod
    def _speed(cls, value: object) -> Speed:
        try:
            return parse_speed(value)  # type: ignore[arg-type]
        except MarketDataError as err:
            raise ValueError(str(err)) from err

    @field_validator("feed_start", "feed_end", mode="after")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return as_utc(value) if value is not None else None

    def source_name(self, settings: Any) -> FeedSourceName:
        """The selected source; ``settings`` (``FEED_FILE``) decides when unset."""
        if self.feed_source is not None:
            return self.feed_source
        return "file" if settings.feed_file is not None else "simulator"


def resolve_tokens(names: tuple[int | str, ...], postgres_url: str) -> tuple[tuple[int, ...], dict[int, str]]:
    """Return ``FEED_TOKENS`` as tokens, and token -> ``EXCHANGE:SYMBOL`` for the named ones.

    Names are looked up in the ``instruments`` table at ``postgres_url``.

    :raises InstrumentError: a name is unknown or not ``EXCHANGE:SYMBOL``.
    :raises HistoryStoreError: the table cannot be read.
    """
    wanted = [n for n in names if isinstance(n, str)]
    if not wanted:
        return tuple(int(n) for n in names), {}
    try:
        with psycopg.connect(postgres_url, connect_timeout=5) as conn:
            resolver = InstrumentResolver(lookup_instruments(conn, wanted))
    except psycopg.Error as err:
        where = redact_url(postgres_url)
        msg = f"market feed: cannot read instruments from {where}: {describe_error(err, postgres_url)}"
        raise HistoryStoreError(msg) from err
    tokens = tuple(resolver.resolve(n) if isinstance(n, str) else n for n in names)
    symbols = {resolver.resolve(n): resolver.instrument(n).key for n in wanted}
    return tokens, symbols


def _kite_source(settings: Any, feed: FeedSettings, servers: live.Servers) -> StreamFeedSource:
    if not (settings.kite_api_key.get_secret_value() and settings.kite_access_token.get_secret_value()):
        msg = "market feed: FEED_SOURCE=kite needs KITE_API_KEY and KITE_ACCESS_TOKEN"
        raise FeedConfigError(msg)
    if not feed.feed_tokens:
        msg = "market feed: FEED_SOURCE=kite needs FEED_TOKENS (tokens or EXCHANGE:SYMBOL names)"
        raise FeedConfigError(msg)
    tokens, symbols = resolve_tokens(feed.feed_tokens, servers.postgres)
    config = KiteFeedConfig(
        api_key=settings.kite_api_key,
        access_token=settings.kite_access_token,
        tokens=tokens,
        mode=feed.feed_mode,
        url=settings.kite_ws_url,
        symbols=symbols,
    )
    return StreamFeedSource("kite", KiteTickerFeed(config).stream, limit=settings.feed_limit)


def _alpaca_source(settings: Any, feed: FeedSettings) -> StreamFeedSource:
    if not (settings.alpaca_api_key.get_secret_value() and settings.alpaca_secret_key.get_secret_value()):
        msg = "market feed: FEED_SOURCE=alpaca needs ALPACA_API_KEY and ALPACA_SECRET_KEY"
        raise FeedConfigError(msg)
    if not feed.feed_symbols:
        msg = "market feed: FEED_SOURCE=alpaca needs FEED_SYMBOLS (e.g. AAPL,MSFT)"
        raise FeedConfigError(msg)
    channels = set(feed.feed_channels)
    config = AlpacaFeedConfig(
        api_key=settings.alpaca_api_key,
        secret_key=settings.alpaca_secret_key,
        trades=feed.feed_symbols if "trades" in channels else (),
        quotes=feed.feed_symbols if "quotes" in channels else (),
        bars=feed.feed_symbols if "bars" in channels else (),
        url=settings.alpaca_stream_url,
    )
    return StreamFeedSource("alpaca", AlpacaStreamFeed(config).stream, limit=settings.feed_limit)


def _history_source(settings: Any, feed: FeedSettings, servers: live.Servers) -> HistorySource:
    tokens = resolve_tokens(feed.feed_tokens, servers.postgres)[0] if feed.feed_tokens else None

    def open_bars() -> Any:
        return stored_bars(servers.postgres, tokens=tokens, start=feed.feed_start, end=feed.feed_end)

    return HistorySource("postgres", open_bars, speed=feed.feed_speed, limit=settings.feed_limit)


def _as_raw(tick: MarketTick) -> RawMessage:
    return RawMessage(MARKET_TICKS, tick_key(tick.instrument_token).encode(), tick_message(tick))


def _feed_dead_letter(letter: DlqEnvelope) -> Outbound:
    DLQ_MESSAGES.labels(MARKET_TICKS, letter.broker, letter.data.failure_info.error_type).inc()
    return Outbound(dlq_topic(MARKET_TICKS), letter.key, letter)


def feed_items(step_id: str, items: Stream[FeedItem]) -> tuple[Stream[RawMessage], Stream[Outbound]]:
    """Split a feed's items: ticks as producer-form raw messages, dead letters for ``market.ticks.dlq``."""
    branches = op.branch(f"{step_id}_is_tick", items, lambda item: isinstance(item, MarketTick))
    raw = op.map(f"{step_id}_encode", branches.trues, _as_raw)  # type: ignore[arg-type]
    dead = op.map(f"{step_id}_dead_letters", branches.falses, _feed_dead_letter)  # type: ignore[arg-type]
    return raw, dead


def build(settings: Any, feed: FeedSettings | None = None) -> Dataflow:
    """Build the market feed for ``settings`` and ``feed`` (default: read from the environment).

    Out: ``market.ticks`` envelopes keyed by instrument token, and
    ``market.ticks.dlq`` dead letters.

    :raises FeedConfigError: the source lacks credentials, tokens or symbols.
    :raises InstrumentError: a ``FEED_TOKENS`` name does not resolve.
    """
    feed = feed if feed is not None else FeedSettings()
    name = feed.source_name(settings)
    servers = live.start(settings)
    needs_postgres = name == "postgres" or any(isinstance(t, str) for t in feed.feed_tokens)
    live.await_servers(servers, kafka=True, postgres=needs_postgres)
    flow = Dataflow("alpha_panda_market_feed")
    service = "market_feed" if name in ("simulator", "file") else f"market_feed.{name}"
    extra_dead: Stream[Outbound] | None = None
    if name in ("simulator", "file"):
        if name == "file":
            if settings.feed_file is None:
                msg = "market feed: FEED_SOURCE=file needs FEED_FILE"
                raise FeedConfigError(msg)
            source: Any = PacedFileSource(settings.feed_file, settings.feed_rate)
        else:
            spec = MarketSpec(
                instruments=settings.feed_instruments, seed=settings.feed_seed, ticks_per_instrument=10**9
            )
            source = PacedSimulatorSource(spec, settings.feed_rate, limit=settings.feed_limit)
        raw = op.input("feed", flow, source)
    else:
        if name == "kite":
            source = _kite_source(settings, feed, servers)
        elif name == "alpaca":
            source = _alpaca_source(settings, feed)
        else:
            source = _history_source(settings, feed, servers)
        raw, extra_dead = feed_items("feed_items", op.input("feed", flow, source))
    ticks, dead = decode_ticks("ingest", raw, service=service, dlq_clock=live.live_dlq_clock)
    published = op.map("publish", ticks, lambda t: Outbound(MARKET_TICKS, t.key, t))
    outputs = op.merge("published", published, dead, *([extra_dead] if extra_dead is not None else []))
    live.attach_sinks(outputs, servers)
    return flow


__getattr__ = live.lazy_flow(__name__, build)
