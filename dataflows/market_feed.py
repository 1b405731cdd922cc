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

from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream

from connectors.feeds import HistorySource, PacedFileSource, PacedSimulatorSource, StreamFeedSource
from connectors.marketdata.alpaca import AlpacaFeedConfig, AlpacaStreamFeed
from connectors.marketdata.errors import FeedConfigError
from connectors.marketdata.kite import KiteFeedConfig, KiteTickerFeed
from connectors.marketdata.store import resolve_tokens, stored_bars
from connectors.marketdata.streaming import FeedItem, tick_message
from connectors.simulator import MarketSpec
from dataflows import live
from dataflows.ingest import decode_ticks
from dataflows.metrics import DLQ_MESSAGES
from dataflows.settings import Settings
from schemas.codec import RawMessage
from schemas.envelope import DlqEnvelope, Outbound
from schemas.events import MarketTick
from schemas.topics import MARKET_TICKS, dlq_topic, tick_key


def _kite_source(settings: Settings, servers: live.Servers) -> StreamFeedSource:
    if not (settings.kite_api_key.get_secret_value() and settings.kite_access_token.get_secret_value()):
        msg = "market feed: FEED_SOURCE=kite needs KITE_API_KEY and KITE_ACCESS_TOKEN"
        raise FeedConfigError(msg)
    if not settings.feed_tokens:
        msg = "market feed: FEED_SOURCE=kite needs FEED_TOKENS (tokens or EXCHANGE:SYMBOL names)"
        raise FeedConfigError(msg)
    tokens, symbols = resolve_tokens(settings.feed_tokens, servers.postgres)
    config = KiteFeedConfig(
        api_key=settings.kite_api_key,
        access_token=settings.kite_access_token,
        tokens=tokens,
        mode=settings.feed_mode,
        url=settings.kite_ws_url,
        symbols=symbols,
    )
    return StreamFeedSource("kite", KiteTickerFeed(config).stream, limit=settings.feed_limit)


def _alpaca_source(settings: Settings) -> StreamFeedSource:
    if not (settings.alpaca_api_key.get_secret_value() and settings.alpaca_secret_key.get_secret_value()):
        msg = "market feed: FEED_SOURCE=alpaca needs ALPACA_API_KEY and ALPACA_SECRET_KEY"
        raise FeedConfigError(msg)
    if not settings.feed_symbols:
        msg = "market feed: FEED_SOURCE=alpaca needs FEED_SYMBOLS (e.g. AAPL,MSFT)"
        raise FeedConfigError(msg)
    channels = set(settings.feed_channels)
    config = AlpacaFeedConfig(
        api_key=settings.alpaca_api_key,
        secret_key=settings.alpaca_secret_key,
        trades=settings.feed_symbols if "trades" in channels else (),
        quotes=settings.feed_symbols if "quotes" in channels else (),
        bars=settings.feed_symbols if "bars" in channels else (),
        url=settings.alpaca_stream_url,
    )
    return StreamFeedSource("alpaca", AlpacaStreamFeed(config).stream, limit=settings.feed_limit)


def _history_source(settings: Settings, servers: live.Servers) -> HistorySource:
    tokens = resolve_tokens(settings.feed_tokens, servers.postgres)[0] if settings.feed_tokens else None

    def open_bars() -> Any:
        return stored_bars(servers.postgres, tokens=tokens, start=settings.feed_start, end=settings.feed_end)

    return HistorySource("postgres", open_bars, speed=settings.feed_speed, limit=settings.feed_limit)


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


def build(settings: Settings) -> Dataflow:
    """Build the market feed for ``settings`` (its ``FEED_*`` fields pick the source).

    Out: ``market.ticks`` envelopes keyed by instrument token, and
    ``market.ticks.dlq`` dead letters.

    Raises:
        FeedConfigError: the source lacks credentials, tokens or symbols.
        InstrumentError: a ``FEED_TOKENS`` name does not resolve.
    """
    name = settings.feed_source_name
    servers = live.start(settings)
    needs_postgres = name == "postgres" or any(isinstance(t, str) for t in settings.feed_tokens)
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
            source = _kite_source(settings, servers)
        elif name == "alpaca":
            source = _alpaca_source(settings)
        else:
            source = _history_source(settings, servers)
        raw, extra_dead = feed_items("feed_items", op.input("feed", flow, source))
    ticks, dead = decode_ticks("ingest", raw, service=service, dlq_clock=live.live_dlq_clock)
    published = op.map("publish", ticks, lambda t: Outbound(MARKET_TICKS, t.key, t))
    outputs = op.merge("published", published, dead, *([extra_dead] if extra_dead is not None else []))
    live.attach_sinks(outputs, servers)
    return flow


__getattr__ = live.lazy_flow(__name__, build)
