import asyncio
import json
import logging
from datetime import UTC, datetime

import pytest
from pydantic import SecretStr
from websockets.asyncio.server import ServerConnection

from connectors.marketdata.alpaca import (
    AlpacaFeedConfig,
    AlpacaStreamFeed,
    fetch_alpaca_bars,
)
from connectors.marketdata.alpaca_protocol import parse_stream_message
from connectors.marketdata.backoff import BackoffConfig
from connectors.marketdata.errors import (
    FeedAuthenticationError,
    HttpStatusError,
    RateLimitedError,
    ResponseShapeError,
)
from connectors.marketdata.instruments import STABLE_TOKEN_BASE, stable_token
from connectors.marketdata.streaming import FeedItem
from schemas.codec import original_value
from schemas.envelope import DlqEnvelope
from schemas.events import MarketTick, Ohlc
from tests.marketdata.conftest import Answer, ScriptedHttp
from tests.marketdata.wsserver import Recorder, scripted_server

KEY = "AKTESTKEY"
SECRET = "alpaca-SECRET-456"
TOKENS = {"AAPL": 1001, "SPY": 1002, "AMD": 1003}
TRADE = {
    "T": "t",
    "S": "AAPL",
    "i": 96921,
    "x": "D",
    "p": 126.55,
    "s": 1,
    "t": "2021-02-22T15:51:44.208Z",
    "c": ["@", "I"],
    "z": "C",
}
BAR = {
    "T": "b",
    "S": "SPY",
    "o": 388.985,
    "h": 389.13,
    "l": 388.975,
    "c": 389.12,
    "v": 49378,
    "t": "2021-02-22T19:15:00Z",
    "n": 461,
    "vw": 389.062639,
}
QUOTE = {
    "T": "q",
    "S": "AMD",
    "bx": "U",
    "bp": 87.66,
    "bs": 1,
    "ax": "Q",
    "ap": 87.68,
    "as": 4,
    "t": "2021-02-22T15:51:45.335689322Z",
    "c": ["R"],
    "z": "C",
}


def test_stable_token_is_deterministic_and_outside_kite_range() -> None:
    assert stable_token("aapl") == stable_token(" AAPL ") == stable_token("AAPL")
    assert stable_token("AAPL") != stable_token("MSFT")
    assert STABLE_TOKEN_BASE <= stable_token("AAPL") < 2 * STABLE_TOKEN_BASE
    assert stable_token("AAPL") == 281474976710656 + int.from_bytes(
        __import__("hashlib").sha256(b"symbol:AAPL").digest()[:6], "big"
    )


def test_parse_trade_bar_quote_and_bad_elements() -> None:
    bad = {"T": "t", "S": "AAPL", "p": 0, "s": 1, "t": "2021-02-22T15:51:44Z"}
    message = json.dumps([TRADE, BAR, QUOTE, bad, {"T": "subscription", "trades": ["AAPL"]}])
    parsed = parse_stream_message(message, TOKENS.__getitem__)
    trade, bar, quote = parsed.ticks
    assert (trade.instrument_token, trade.last_price, trade.volume) == (1001, 126.55, 1)
    assert trade.timestamp == datetime(2021, 2, 22, 15, 51, 44, 208000, tzinfo=UTC)
    assert bar.last_price == 389.12 and bar.volume == 49378
    assert bar.ohlc == Ohlc(open=388.985, high=389.13, low=388.975, close=389.12)
    assert quote.last_price == pytest.approx(87.67)
    assert quote.depth == {
        "buy": [{"price": 87.66, "quantity": 1, "orders": 0}],
        "sell": [{"price": 87.68, "quantity": 4, "orders": 0}],
    }
    assert [c["T"] for c in parsed.controls] == ["subscription"]
    (err,) = parsed.errors
    assert "last_price must be finite, > 0" in str(err)
    assert json.loads(err.raw) == bad
    assert len(parse_stream_message("{nope", TOKENS.__getitem__).errors) == 1


def _config(url: str, **kwargs: object) -> AlpacaFeedConfig:
    return AlpacaFeedConfig(
        api_key=SecretStr(KEY),
        secret_key=SecretStr(SECRET),
        trades=("AAPL",),
        bars=("SPY",),
        url=url,
        token_of=TOKENS.__getitem__,
        backoff=BackoffConfig(initial_s=0.01, maximum_s=0.02, max_attempts=3),
        **kwargs,  # type: ignore[arg-type]
    )


async def _handshake(ws: ServerConnection, rec: Recorder) -> None:
    await ws.send(json.dumps([{"T": "success", "msg": "connected"}]))
    auth = json.loads((await rec.expect(ws, 1))[0])
    assert auth == {"action": "auth", "key": KEY, "secret": SECRET}
    await ws.send(json.dumps([{"T": "success", "msg": "authenticated"}]))
    sub = json.loads((await rec.expect(ws, 1))[0])
    await ws.send(json.dumps([{"T": "subscription", "trades": sub["trades"], "bars": sub["bars"]}]))


async def _first(ws: ServerConnection, rec: Recorder) -> None:
    await _handshake(ws, rec)
    await ws.send(json.dumps([TRADE]))
    await ws.send("not json at all")
    await ws.send(json.dumps([BAR]))
    await ws.close()


async def _second(ws: ServerConnection, rec: Recorder) -> None:
    await _handshake(ws, rec)
    await ws.send(json.dumps([{**TRADE, "p": 127.0}]))
    await ws.wait_closed()


async def _collect(feed: AlpacaStreamFeed, ticks_wanted: int) -> list[FeedItem]:
    items: list[FeedItem] = []
    stream = feed.stream()
    try:
        async with asyncio.timeout(10):
            async for item in stream:
                items.append(item)
                if sum(isinstance(i, MarketTick) for i in items) >= ticks_wanted:
                    break
    finally:
        await stream.aclose()
    return items


def test_stream_auth_subscribe_parse_and_reconnect(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    delays: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        delays.append(seconds)

    async def main() -> tuple[list[FeedItem], Recorder, AlpacaStreamFeed]:
        async with scripted_server([_first, _second]) as (url, rec):
            feed = AlpacaStreamFeed(_config(url), sleep=fake_sleep)
            return await _collect(feed, ticks_wanted=3), rec, feed

    items, rec, feed = asyncio.run(main())
    ticks = [i for i in items if isinstance(i, MarketTick)]
    assert [(t.symbol, t.last_price) for t in ticks] == [("AAPL", 126.55), ("SPY", 389.12), ("AAPL", 127.0)]
    (dead,) = [i for i in items if isinstance(i, DlqEnvelope)]
    assert original_value(dead.data.original_message) == b"not json at all"
    assert dead.data.failure_info.error_type == "poison"
    subscribe = {"action": "subscribe", "trades": ["AAPL"], "quotes": [], "bars": ["SPY"]}
    assert [json.loads(conn[1]) for conn in rec.received] == [subscribe, subscribe]
    assert feed.connections == 2 and len(delays) == 1
    assert SECRET not in caplog.text and KEY not in caplog.text
    assert SECRET not in repr(_config("ws://x"))


def test_stream_auth_failure_is_fatal() -> None:
    async def refuse(ws: ServerConnection, rec: Recorder) -> None:
        await ws.send(json.dumps([{"T": "success", "msg": "connected"}]))
        await rec.expect(ws, 1)
        await ws.send(json.dumps([{"T": "error", "code": 402, "msg": "auth failed"}]))
        await ws.wait_closed()

    async def main() -> None:
        async with scripted_server([refuse]) as (url, _):
            await _collect(AlpacaStreamFeed(_config(url)), ticks_wanted=1)

    with pytest.raises(FeedAuthenticationError, match="error 402 'auth failed'"):
        asyncio.run(main())


START = datetime(2024, 1, 2, tzinfo=UTC)
END = datetime(2024, 1, 5, tzinfo=UTC)


def _bar(day: int, close: float) -> dict[str, object]:
    return {
        "t": f"2024-01-0{day}T05:00:00Z",
        "o": close - 1,
        "h": close + 1,
        "l": close - 2,
        "c": close,
        "v": 1000 * day,
        "n": 10,
        "vw": close,
    }


def test_bars_follow_pages_and_wait_out_429(http_server: ScriptedHttp) -> None:
    http_server.on(
        "/v2/stocks/bars",
        Answer(200, {"bars": {"AAPL": [_bar(2, 185.0), _bar(3, 184.0)]}, "next_page_token": "p2"}),
        Answer(429, {"message": "too many requests"}, {"Retry-After": "2"}),
        Answer(200, {"bars": {"AAPL": [_bar(4, 181.5)], "MSFT": [_bar(2, 370.0)]}, "next_page_token": None}),
    )
    waits: list[float] = []
    bars = fetch_alpaca_bars(
        ["msft", "AAPL"],
        START,
        END,
        "1Day",
        "split",
        api_key=SecretStr(KEY),
        secret_key=SecretStr(SECRET),
        base_url=http_server.base_url,
        sleep=waits.append,
    )
    assert [(b.symbol, b.timestamp.day, b.close) for b in bars] == [
        ("AAPL", 2, 185.0),
        ("AAPL", 3, 184.0),
        ("AAPL", 4, 181.5),
        ("MSFT", 2, 370.0),
    ]
    assert bars[0].instrument_token == stable_token("AAPL")
    assert (bars[0].open, bars[0].high, bars[0].low, bars[0].volume) == (184.0, 186.0, 183.0, 2000)
    assert waits == [2.0]
    first, retried, second = http_server.seen
    assert first.query["symbols"] == "AAPL,MSFT"
    assert first.query["start"] == "2024-01-02T00:00:00Z"
    assert first.query["adjustment"] == "split" and first.query["timeframe"] == "1Day"
    assert "page_token" not in first.query
    assert retried.query["page_token"] == second.query["page_token"] == "p2"
    assert first.headers["apca-api-key-id"] == KEY
    assert first.headers["apca-api-secret-key"] == SECRET


def test_bars_errors(http_server: ScriptedHttp) -> None:
    def fetch(**kwargs: object) -> object:
        return fetch_alpaca_bars(
            ["AAPL"],
            START,
            END,
            api_key=SecretStr(KEY),
            secret_key=SecretStr(SECRET),
            base_url=http_server.base_url,
            sleep=lambda _: None,
            **kwargs,  # type: ignore[arg-type]
        )

    http_server.on("/v2/stocks/bars", Answer(429, "slow down", {"Retry-After": "1"}))
    with pytest.raises(RateLimitedError, match="retry after 1 s"):
        fetch(rate_limit_retries=2)
    assert len(http_server.seen) == 3
    http_server.answers.clear()
    http_server.on("/v2/stocks/bars", Answer(403, {"message": "forbidden"}))
    with pytest.raises(FeedAuthenticationError, match="HTTP 403") as info:
        fetch()
    assert SECRET not in str(info.value)
    http_server.answers.clear()
    http_server.on("/v2/stocks/bars", Answer(500, "boom"))
    with pytest.raises(HttpStatusError, match="HTTP 500"):
        fetch()
    http_server.answers.clear()
    http_server.on("/v2/stocks/bars", Answer(200, {"next_page_token": None}))
    with pytest.raises(ResponseShapeError, match="'bars' is missing"):
        fetch()
