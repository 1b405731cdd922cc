"""The market feed's Bytewax sources, run by the real runtime without Kafka.

Live streams come from local protocol servers (KiteTicker binary frames,
Alpaca JSON); bar history from an in-memory list. Into Kafka and through
``dataflows.market_feed`` end to end: ``tests/integration/test_feed_parity.py``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, run_main
from pydantic import SecretStr
from websockets.asyncio.server import ServerConnection

from connectors.feeds import HistorySource, StreamFeedSource
from connectors.marketdata.alpaca import AlpacaFeedConfig, AlpacaStreamFeed
from connectors.marketdata.backfill import EventPacer, parse_speed
from connectors.marketdata.bars import Bar
from connectors.marketdata.errors import FeedAuthenticationError, HistoryFormatError
from connectors.marketdata.kite import KiteFeedConfig, KiteTickerFeed
from connectors.marketdata.streaming import FeedItem, tick_message
from dataflows.ingest import decode_ticks
from dataflows.market_feed import feed_items
from dataflows.settings import Settings
from schemas.codec import decode_tick
from schemas.envelope import DlqEnvelope, Outbound, TickEnvelope, tick_id
from schemas.events import MarketTick, Ohlc
from tests.marketdata import kite_frames as kf
from tests.marketdata.wsserver import Recorder, threaded_server

INFY, NIFTY = 408065, 256265
BAD_PACKET = b"\x00\x06\x3a\x01" + b"\x00" * 6
T0 = datetime(2024, 1, 2, 14, 30, tzinfo=UTC)


def _kite(url: str) -> KiteTickerFeed:
    return KiteTickerFeed(
        KiteFeedConfig(
            api_key=SecretStr("key"),
            access_token=SecretStr("token-SECRET"),
            tokens=(INFY, NIFTY),
            mode="ltp",
            url=url,
            read_timeout_s=5.0,
        )
    )


async def _kite_script(ws: ServerConnection, rec: Recorder) -> None:
    await rec.expect(ws, 2)
    await ws.send(b"\x01")
    await ws.send(kf.frame(kf.ltp(INFY, 150025), BAD_PACKET, kf.ltp(NIFTY, 2265010)))
    await ws.send(kf.frame(kf.ltp(INFY, 150100)))
    await ws.wait_closed()


def _run(source: object, workers: int = 1) -> list[FeedItem]:
    flow = Dataflow("feed_source_test")
    out: list[FeedItem] = []
    op.output("out", op.input("in", flow, source), TestingSink(out))  # type: ignore[arg-type]
    if workers == 1:
        run_main(flow)
    else:
        from bytewax.testing import cluster_main

        cluster_main(flow, [], 0, worker_count_per_proc=workers)
    return out


@pytest.mark.parametrize("workers", [1, 2])
def test_kite_stream_source_emits_ticks_and_dead_letters_then_stops_at_the_limit(workers: int) -> None:
    with threaded_server([_kite_script]) as (url, rec):
        items = _run(StreamFeedSource("kite", _kite(url).stream, limit=3), workers)
    ticks = [i for i in items if isinstance(i, MarketTick)]
    assert [(t.instrument_token, t.last_price) for t in ticks] == [
        (INFY, 1500.25),
        (NIFTY, 22650.10),
        (INFY, 1501.0),
    ]
    (letter,) = [i for i in items if isinstance(i, DlqEnvelope)]
    assert letter.data.dlq_metadata.original_topic == "market.ticks"
    assert letter.data.failure_info.error_type == "poison"
    assert len(rec.paths) == 1, "one partition: one connection whatever the worker count"
    assert "access_token=token-SECRET" in rec.paths[0]


def test_stream_source_lets_an_authentication_failure_stop_the_flow() -> None:
    from http import HTTPStatus

    from bytewax.errors import BytewaxRuntimeError

    with (
        threaded_server([], reject_status=HTTPStatus.FORBIDDEN) as (url, _rec),
        pytest.raises(BytewaxRuntimeError) as info,
    ):
        _run(StreamFeedSource("kite", _kite(url).stream, limit=1))
    cause = info.value.__cause__
    assert isinstance(cause, FeedAuthenticationError)
    assert "refused the credentials" in str(cause)
    assert "token-SECRET" not in str(cause)


async def _alpaca_script(ws: ServerConnection, rec: Recorder) -> None:
    await ws.send(json.dumps([{"T": "success", "msg": "connected"}]))
    await rec.expect(ws, 1)
    await ws.send(json.dumps([{"T": "success", "msg": "authenticated"}]))
    await rec.expect(ws, 1)
    trade = {"T": "t", "S": "AAPL", "i": 1, "x": "V", "p": 190.5, "s": 3, "t": "2024-01-02T14:30:00Z"}
    bar = {
        "T": "b",
        "S": "MSFT",
        "o": 370.0,
        "h": 371.0,
        "l": 369.5,
        "c": 370.5,
        "v": 1200,
        "t": "2024-01-02T14:30:00Z",
    }
    await ws.send(json.dumps([trade, {"T": "t", "S": "AAPL", "p": -1}, bar]))
    await ws.wait_closed()


def test_alpaca_stream_source_emits_trades_bars_and_dead_letters() -> None:
    tokens = {"AAPL": 11, "MSFT": 12}
    with threaded_server([_alpaca_script]) as (url, rec):
        config = AlpacaFeedConfig(
            api_key=SecretStr("k"),
            secret_key=SecretStr("s"),
            trades=("AAPL",),
            bars=("MSFT",),
            url=url,
            token_of=tokens.__getitem__,
        )
        items = _run(StreamFeedSource("alpaca", AlpacaStreamFeed(config).stream, limit=2))
    ticks = [i for i in items if isinstance(i, MarketTick)]
    assert [(t.instrument_token, t.last_price, t.volume) for t in ticks] == [
        (11, 190.5, 3),
        (12, 370.5, 1200),
    ]
    assert ticks[1].ohlc == Ohlc(open=370.0, high=371.0, low=369.5, close=370.5)
    assert sum(isinstance(i, DlqEnvelope) for i in items) == 1
    assert json.loads(rec.received[0][1]) == {
        "action": "subscribe",
        "trades": ["AAPL"],
        "quotes": [],
        "bars": ["MSFT"],
    }


def _bars(count: int, step: timedelta = timedelta(minutes=1)) -> list[Bar]:
    return [
        Bar(100 + i % 2, T0 + step * (i // 2), 10.0 + i, 11.0 + i, 9.0 + i, 10.5 + i, i, source="test")
        for i in range(count)
    ]


def test_history_source_at_max_speed_emits_every_bar_as_a_tick_in_order() -> None:
    bars = _bars(7)
    ticks = _run(HistorySource("h", lambda: iter(bars), batch_size=3))
    assert ticks == [b.to_tick() for b in bars]


def test_history_source_stops_at_the_limit_and_resumes_after_what_it_sent() -> None:
    bars = _bars(6)
    source = HistorySource("h", lambda: iter(bars), limit=4, batch_size=10)
    part = source.build_part("in", "h", None)
    assert part.next_batch() == [b.to_tick() for b in bars[:4]]
    assert part.snapshot() == 4
    with pytest.raises(StopIteration):
        part.next_batch()
    resumed = HistorySource("h", lambda: iter(bars)).build_part("in", "h", 4)
    assert resumed.next_batch() == [b.to_tick() for b in bars[4:]]


def test_history_source_waits_with_next_awake_instead_of_sleeping() -> None:
    now = [0.0]
    bars = _bars(6, step=timedelta(seconds=10))  # two tokens per 10 s of event time
    part = HistorySource("h", lambda: iter(bars), speed=10, clock=lambda: now[0]).build_part("in", "h", None)
    assert len(part.next_batch()) == 2  # the first instant is due at once
    assert part.next_batch() == []
    awake = part.next_awake()
    # Wakes within 50 ms (a sleeping input would hold the epoch, and so the
    # whole flow) but emits nothing before the next instant is due.
    assert awake is not None
    assert 0 < (awake - datetime.now(UTC)).total_seconds() <= 0.05
    now[0] = 0.5
    assert part.next_batch() == []
    now[0] = 1.0  # 10 s of event time at 10x
    assert [t.timestamp for t in part.next_batch()] == [bars[2].timestamp] * 2
    now[0] = 100.0
    assert len(part.next_batch()) == 2
    with pytest.raises(StopIteration):
        part.next_batch()


def test_pacer_and_speed_parsing() -> None:
    pacer = EventPacer(2)
    assert pacer.delay(T0, 50.0) == 0.0
    assert pacer.delay(T0 + timedelta(seconds=10), 51.0) == pytest.approx(4.0)
    assert pacer.delay(T0 - timedelta(seconds=10), 51.0) < 0  # older than the anchor: due now
    assert EventPacer("max").delay(T0 + timedelta(days=1), 0.0) == 0.0
    assert parse_speed("MAX") == "max" and parse_speed("10") == 10.0 and parse_speed(1) == 1.0
    for bad in ("0", "-1", "fast", "nan"):
        with pytest.raises(HistoryFormatError, match="positive number or 'max'"):
            parse_speed(bad)


def test_feed_items_become_the_same_envelopes_a_tick_file_line_would() -> None:
    tick = MarketTick(instrument_token=INFY, last_price=1500.25, timestamp=T0, volume=7, symbol="NSE:INFY")
    flow = Dataflow("feed_items_test")
    out: list[Outbound | TickEnvelope] = []
    items = op.input("in", flow, StreamFeedSource("x", lambda: _items([tick, _bad_letter()])))
    raw, dead = feed_items("items", items)
    ticks, decode_dead = decode_ticks("ingest", raw, service="market_feed.test", dlq_clock=lambda _m: T0)
    op.output("out", op.merge("all", ticks, dead, decode_dead), TestingSink(out))
    run_main(flow)
    envelope = next(o for o in out if isinstance(o, TickEnvelope))
    line = json.dumps(
        {
            "type": "market_tick",
            "data": {
                "instrument_token": INFY,
                "last_price": 1500.25,
                "timestamp": "2024-01-02T14:30:00Z",
                "volume": 7,
                "symbol": "NSE:INFY",
            },
        }
    ).encode()
    from_file = decode_tick(line, source="market_feed.test")
    assert envelope == from_file
    assert envelope.id == tick_id(tick)
    assert decode_tick(tick_message(tick)) == decode_tick(line)
    (dead_out,) = [o for o in out if isinstance(o, Outbound)]
    assert dead_out.topic == "market.ticks.dlq"


async def _items(items: list[FeedItem]):  # an async generator
    for item in items:
        yield item


def _bad_letter() -> DlqEnvelope:
    from schemas.codec import dead_letter

    return dead_letter(
        topic="market.ticks",
        key="1",
        value=b"\x00\x01",
        error_type="poison",
        error_class="KitePacketError",
        error_message="bad",
        service_name="test",
        dlq_timestamp=T0,
    )


def test_feed_settings_parse_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEED_SOURCE", "postgres")
    monkeypatch.setenv("FEED_TOKENS", "256265, NSE:INFY")
    monkeypatch.setenv("FEED_SPEED", "10")
    monkeypatch.setenv("FEED_START", "2024-01-01")
    monkeypatch.setenv("FEED_SYMBOLS", "aapl,msft")
    monkeypatch.setenv("FEED_CHANNELS", "trades,bars")
    feed = Settings()
    assert feed.feed_tokens == (256265, "NSE:INFY")
    assert feed.feed_speed == 10.0
    assert feed.feed_start == datetime(2024, 1, 1, tzinfo=UTC)
    assert feed.feed_symbols == ("AAPL", "MSFT")
    assert feed.feed_channels == ("trades", "bars")
    monkeypatch.setenv("FEED_SPEED", "0")
    with pytest.raises(ValueError, match="positive number or 'max'"):
        Settings()
    monkeypatch.delenv("FEED_SOURCE")
    monkeypatch.setenv("FEED_SPEED", "max")
    assert Settings().feed_source_name == "simulator"
    assert Settings(feed_file="ticks.jsonl").feed_source_name == "file"
    assert Settings(feed_file="ticks.jsonl", feed_source="kite").feed_source_name == "kite"
