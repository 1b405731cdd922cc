import asyncio
import json
import logging
import random
from datetime import UTC, datetime
from http import HTTPStatus

import pytest
from pydantic import SecretStr
from websockets.asyncio.server import ServerConnection

from connectors.marketdata.backoff import BackoffConfig
from connectors.marketdata.errors import FeedAuthenticationError, FeedGaveUpError
from connectors.marketdata.kite import KiteFeedConfig, KiteTickerFeed
from connectors.marketdata.streaming import FeedItem
from schemas.codec import original_value
from schemas.envelope import DlqEnvelope
from schemas.events import MarketTick
from tests.marketdata import kite_frames as kf
from tests.marketdata.wsserver import Recorder, scripted_server

NOW = datetime(2024, 6, 6, 4, 0, tzinfo=UTC)
INFY = 408065
NIFTY = 256265
API_KEY = "kite-key-xyz"
ACCESS_TOKEN = "kite-token-SECRET-123"
BAD_PACKET = b"\x00\x06\x3a\x01" + b"\x00" * 6


def _config(url: str, **kwargs: object) -> KiteFeedConfig:
    return KiteFeedConfig(
        api_key=SecretStr(API_KEY),
        access_token=SecretStr(ACCESS_TOKEN),
        tokens=(INFY, NIFTY),
        url=url,
        read_timeout_s=2.0,
        backoff=BackoffConfig(initial_s=0.01, maximum_s=0.05, max_attempts=5),
        **kwargs,  # type: ignore[arg-type]
    )


async def _collect(feed: KiteTickerFeed, ticks_wanted: int) -> list[FeedItem]:
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


async def _first_connection(ws: ServerConnection, rec: Recorder) -> None:
    await rec.expect(ws, 2)
    await ws.send(b"\x01")  # heartbeat
    await ws.send(kf.frame(kf.ltp(INFY, 150025)))
    await ws.send(kf.frame(BAD_PACKET, kf.ltp(NIFTY, 2265010)))
    await ws.send(json.dumps({"type": "order", "data": {"order_id": "42"}}))
    await ws.close()  # the server drops us


async def _second_connection(ws: ServerConnection, rec: Recorder) -> None:
    await rec.expect(ws, 2)
    await ws.send(kf.frame(kf.ltp(INFY, 150100)))
    await ws.wait_closed()


def test_stream_parses_dead_letters_and_reconnects_with_resubscribe(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    delays: list[float] = []
    texts: list[object] = []

    async def fake_sleep(seconds: float) -> None:
        delays.append(seconds)

    async def main() -> tuple[list[FeedItem], Recorder, KiteTickerFeed]:
        async with scripted_server([_first_connection, _second_connection]) as (url, rec):
            feed = KiteTickerFeed(
                _config(url), clock=lambda: NOW, sleep=fake_sleep, on_text=texts.append, rng=random.Random(11)
            )
            return await _collect(feed, ticks_wanted=3), rec, feed

    items, rec, feed = asyncio.run(main())
    ticks = [i for i in items if isinstance(i, MarketTick)]
    dead = [i for i in items if isinstance(i, DlqEnvelope)]
    assert [(t.instrument_token, t.last_price) for t in ticks] == [
        (INFY, 1500.25),
        (NIFTY, 22650.10),
        (INFY, 1501.0),
    ]
    assert all(t.timestamp == NOW for t in ticks)
    (record,) = dead
    assert record.data.dlq_metadata.original_topic == "market.ticks"
    assert record.data.failure_info.error_type == "poison"
    assert record.data.failure_info.error_class == "KitePacketError"
    assert original_value(record.data.original_message) == BAD_PACKET
    assert [getattr(t, "type", None) for t in texts] == ["order"]

    # Both connections subscribed and set full mode: the server saw the resubscribe.
    expected = [
        {"a": "subscribe", "v": [INFY, NIFTY]},
        {"a": "mode", "v": ["full", [INFY, NIFTY]]},
    ]
    assert [[json.loads(m) for m in conn] for conn in rec.received] == [expected, expected]
    assert feed.connections == 2
    # One reconnect, full jitter under the first ceiling (initial_s = 0.01), drawn from the injected rng.
    assert delays == [random.Random(11).random() * 0.01]
    assert f"access_token={ACCESS_TOKEN}" in rec.paths[0]
    assert f"api_key={API_KEY}" in rec.paths[0]
    # Credentials never reach the logs, even at DEBUG.
    assert caplog.records
    assert ACCESS_TOKEN not in caplog.text and API_KEY not in caplog.text
    assert ACCESS_TOKEN not in repr(feed) and ACCESS_TOKEN not in repr(_config(url="ws://x"))


def test_forbidden_handshake_is_an_authentication_error() -> None:
    async def main() -> None:
        async with scripted_server([], reject_status=HTTPStatus.FORBIDDEN) as (url, _):
            await _collect(KiteTickerFeed(_config(url)), ticks_wanted=1)

    with pytest.raises(FeedAuthenticationError, match="HTTP 403") as info:
        asyncio.run(main())
    assert ACCESS_TOKEN not in str(info.value)


def test_silent_connection_times_out_and_gives_up_after_max_attempts() -> None:
    async def silent(ws: ServerConnection, rec: Recorder) -> None:
        await rec.expect(ws, 2)
        await ws.wait_closed()

    async def no_sleep(_: float) -> None:
        return None

    async def main() -> Recorder:
        async with scripted_server([silent] * 3) as (url, rec):
            config = KiteFeedConfig(
                api_key=SecretStr(API_KEY),
                access_token=SecretStr(ACCESS_TOKEN),
                tokens=(INFY,),
                mode="ltp",
                url=url,
                read_timeout_s=0.1,
                backoff=BackoffConfig(initial_s=0.01, max_attempts=0),
            )
            with pytest.raises(FeedGaveUpError, match="gave up after 0"):
                await _collect(KiteTickerFeed(config, sleep=no_sleep), ticks_wanted=1)
            return rec

    rec = asyncio.run(main())
    assert [json.loads(m) for m in rec.received[0]][1] == {"a": "mode", "v": ["ltp", [INFY]]}
