"""Real market data into the pipeline, on real Kafka-API, Redis and PostgreSQL servers.

- Parity: bars upserted into ``market_data`` -> ``alpha-panda feed --from
  postgres --speed max`` -> the all-in-one pipeline give the ledger fills and
  Redis portfolios that ``alpha-panda replay`` gives over the same history
  written as a tick file.
- ``dataflows.market_feed`` with ``FEED_SOURCE`` kite, alpaca and postgres
  publishes to ``market.ticks`` (malformed packets to ``market.ticks.dlq``);
  the live streams come from local servers speaking the real protocols.
- ``alpha-panda feed --from FILE`` accepts tick files as replay reads them
  and bar history files.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from bytewax.testing import run_main
from pydantic import SecretStr
from typer.testing import CliRunner
from websockets.asyncio.server import ServerConnection

from alpha_panda.cli import app
from connectors.marketdata.bars import Bar
from connectors.marketdata.instruments import KITE_COLUMNS, parse_kite_instruments, stable_token
from connectors.marketdata.store import upsert_bars, upsert_instruments
from connectors.simulator import MarketSpec, simulate
from dataflows import market_feed
from dataflows.pipeline import live_flow
from dataflows.settings import get_settings
from schemas.codec import decode_tick
from tests.integration.live_world import World, live_world
from tests.integration.test_live_pipeline import replay_reference, without_time
from tests.marketdata import kite_frames as kf
from tests.marketdata.wsserver import Recorder, threaded_server

pytestmark = pytest.mark.integration

INFY, NIFTY = 408065, 256265


@pytest.fixture
def world(redis_url: str, postgres_url: str) -> Iterator[World]:
    with live_world(redis_url, postgres_url) as w:
        yield w


@pytest.fixture
def cli_for(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Return ``run(world, *args)``: the CLI with the world's servers in its environment."""

    def run(world: World, *args: str) -> Any:
        monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", world.urls.kafka)
        monkeypatch.setenv("POSTGRES_URL", world.urls.postgres)
        monkeypatch.setenv("REDIS_URL", world.urls.redis)
        get_settings.cache_clear()
        result = CliRunner().invoke(app, list(args))
        assert result.exit_code == 0, result.output
        return result

    yield run
    get_settings.cache_clear()


def history(instruments: int = 10, bars: int = 240, seed: int = 11) -> list[Bar]:
    """A deterministic bar history: the simulator's walk as 1-minute closes, in time order."""
    spec = MarketSpec(
        instruments=instruments, ticks_per_instrument=bars, seed=seed, interval=timedelta(minutes=1)
    )
    previous: dict[int, float] = {}
    out = []
    for message in simulate(spec):
        data: dict[str, Any] = message["data"]  # type: ignore[assignment]
        token, close = data["instrument_token"], data["last_price"]
        open_ = previous.get(token, close)
        previous[token] = close
        out.append(
            Bar(
                instrument_token=token,
                timestamp=datetime.fromisoformat(data["timestamp"]),
                open=open_,
                high=max(open_, close) * 1.001,
                low=min(open_, close) * 0.999,
                close=close,
                volume=int(data.get("volume") or 0),
                symbol=f"SIM{token}",
                source="test",
            )
        )
    return out


def tick_lines(bars: list[Bar]) -> list[bytes]:
    """The same history as a replay tick file: close as last_price, bar start as time (UTC)."""
    ordered = sorted(bars, key=lambda b: (b.timestamp, b.instrument_token))
    return [
        json.dumps(
            {
                "type": "market_tick",
                "data": {
                    "instrument_token": b.instrument_token,
                    "last_price": b.close,
                    "timestamp": b.timestamp.isoformat(),
                },
            }
        ).encode()
        for b in ordered
    ]


def _count(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM market_data").fetchone()
    assert row is not None
    return int(row[0])


def test_feed_from_postgres_then_pipeline_equals_replay(world: World, cli_for: Any, tmp_path: Path) -> None:
    rows = world.seed()
    bars = history()
    with psycopg.connect(world.urls.postgres) as conn:
        assert upsert_bars(conn, bars) == len(bars)
        assert upsert_bars(conn, bars) == len(bars)
    assert _count(world.urls.postgres) == len(bars), "loading twice leaves one row per bar"

    result = cli_for(world, "feed", "--from", "postgres", "--speed", "max", "--quiet", "--batch", "1000")
    assert f"published {len(bars):,} ticks" in result.output

    lines = tick_lines(bars)
    published = world.topic("market.ticks")
    assert [m["id"] for m in published] == [decode_tick(line).id for line in lines]
    assert published[0]["data"]["ohlc"]["close"] == published[0]["data"]["last_price"]

    run_main(live_flow(world.settings()))

    fills, reference = replay_reference(world, rows, lines, tmp_path)
    assert fills, "the history trades"
    assert world.fills() == fills
    assert without_time(world.portfolios()) == without_time(reference)


def test_feed_from_files_tick_csv_and_bar_history(world: World, cli_for: Any, tmp_path: Path) -> None:
    bars = history(instruments=2, bars=5)
    ticks_csv = tmp_path / "ticks.csv"
    with ticks_csv.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["instrument_token", "last_price", "timestamp"])
        for b in bars:
            writer.writerow([b.instrument_token, b.close, b.timestamp.isoformat()])
        writer.writerow([256265, "-3", bars[0].timestamp.isoformat()])  # bad price: dead letter
    result = cli_for(world, "feed", "--from", str(ticks_csv), "--quiet")
    assert "published 10 ticks" in result.output and "dead letters: 1" in result.output

    bars_jsonl = tmp_path / "bars.jsonl"
    bars_jsonl.write_text(
        "".join(
            json.dumps(
                {
                    "instrument_token": b.instrument_token,
                    "timestamp": b.timestamp.isoformat(),
                    "open": b.open,
                    "high": b.high,
                    "low": b.low,
                    "close": b.close,
                    "volume": b.volume,
                }
            )
            + "\n"
            for b in reversed(bars)  # out of order on disk: published in time order
        )
    )
    cli_for(world, "feed", "--from", str(bars_jsonl), "--tokens", str(bars[0].instrument_token), "--quiet")

    published = world.topic("market.ticks")
    from_csv, from_bars = published[:10], published[10:]
    assert [m["data"]["last_price"] for m in from_csv] == [b.close for b in bars]
    assert [m["id"] for m in from_bars] == [
        m["id"] for m in from_csv if m["key"] == str(bars[0].instrument_token)
    ]
    (letter,) = world.topic("market.ticks.dlq")
    assert "last_price must be" in letter["data"]["failure_info"]["error_message"]
    assert letter["data"]["dlq_metadata"]["original_offset"] == 12  # the CSV line number


def test_market_feed_postgres_source_publishes_the_history_in_time_order(world: World) -> None:
    bars = history(instruments=3, bars=20)
    with psycopg.connect(world.urls.postgres) as conn:
        upsert_bars(conn, bars)
    start = sorted({b.timestamp for b in bars})[5]
    settings = world.settings(
        feed_source="postgres", feed_speed="max", feed_start=start, feed_tokens=(256265, 258265)
    )
    run_main(market_feed.build(settings))
    published = world.topic("market.ticks")
    wanted = sorted(
        (b for b in bars if b.timestamp >= start and b.instrument_token in (256265, 258265)),
        key=lambda b: (b.timestamp, b.instrument_token),
    )
    assert [m["id"] for m in published] == [decode_tick(line).id for line in tick_lines(wanted)]
    assert {m["source"] for m in published} == {"market_feed.postgres"}


async def _kite_script(ws: ServerConnection, rec: Recorder) -> None:
    await rec.expect(ws, 2)
    await ws.send(kf.frame(kf.ltp(INFY, 150025), b"\x00\x06\x3a\x01" + b"\x00" * 6))
    await ws.send(kf.frame(kf.ltp(NIFTY, 2265010), kf.ltp(INFY, 150100)))
    await ws.wait_closed()


def test_market_feed_kite_source_into_kafka(world: World) -> None:
    csv_text = ",".join(KITE_COLUMNS) + "\n408065,1594,INFY,INFOSYS,1500.25,,0,0.05,1,EQ,NSE,NSE\n"
    with psycopg.connect(world.urls.postgres) as conn:
        upsert_instruments(conn, parse_kite_instruments(csv_text))
    with threaded_server([_kite_script]) as (url, rec):
        settings = world.settings(
            kite_ws_url=url,
            kite_api_key=SecretStr("kite-key"),
            kite_access_token=SecretStr("kite-SECRET"),
            feed_limit=3,
            feed_source="kite",
            feed_tokens=("NSE:INFY", NIFTY),
            feed_mode="ltp",
        )
        run_main(market_feed.build(settings))
    assert [json.loads(m) for m in rec.received[0]] == [
        {"a": "subscribe", "v": [INFY, NIFTY]},
        {"a": "mode", "v": ["ltp", [INFY, NIFTY]]},
    ]
    ticks = world.topic("market.ticks")
    assert [(m["key"], m["data"]["last_price"]) for m in ticks] == [
        (str(INFY), 1500.25),
        (str(NIFTY), 22650.10),
        (str(INFY), 1501.0),
    ]
    assert ticks[0]["data"]["symbol"] == "NSE:INFY"
    assert {m["source"] for m in ticks} == {"market_feed.kite"}
    (letter,) = world.topic("market.ticks.dlq")
    assert letter["data"]["failure_info"]["error_type"] == "poison"
    assert letter["data"]["dlq_metadata"]["service_name"] == "market_feed.kite"


async def _alpaca_session(ws: ServerConnection, rec: Recorder) -> None:
    await ws.send(json.dumps([{"T": "success", "msg": "connected"}]))
    await rec.expect(ws, 1)
    await ws.send(json.dumps([{"T": "success", "msg": "authenticated"}]))
    await rec.expect(ws, 1)
    trade = {"T": "t", "S": "AAPL", "i": 7, "x": "V", "p": 190.25, "s": 5, "t": "2024-01-02T14:30:00.5Z"}
    bar = {
        "T": "b",
        "S": "AAPL",
        "o": 190,
        "h": 191,
        "l": 189,
        "c": 190.5,
        "v": 900,
        "t": "2024-01-02T14:31:00Z",
    }
    await ws.send(json.dumps([trade, {"T": "t", "S": "AAPL"}, bar]))
    await ws.wait_closed()


def test_market_feed_alpaca_source_into_kafka(world: World) -> None:
    with threaded_server([_alpaca_session]) as (url, rec):
        settings = world.settings(
            alpaca_stream_url=url,
            alpaca_api_key=SecretStr("AK"),
            alpaca_secret_key=SecretStr("alpaca-SECRET"),
            feed_limit=2,
            feed_source="alpaca",
            feed_symbols=("AAPL",),
            feed_channels=("trades", "bars"),
        )
        run_main(market_feed.build(settings))
    assert json.loads(rec.received[0][1]) == {
        "action": "subscribe",
        "trades": ["AAPL"],
        "quotes": [],
        "bars": ["AAPL"],
    }
    ticks = world.topic("market.ticks")
    token = str(stable_token("AAPL"))
    assert [(m["key"], m["data"]["last_price"]) for m in ticks] == [(token, 190.25), (token, 190.5)]
    assert len(world.topic("market.ticks.dlq")) == 1


def test_market_feed_refuses_a_source_without_credentials(world: World) -> None:
    from connectors.marketdata.errors import FeedConfigError

    with pytest.raises(FeedConfigError, match="needs KITE_API_KEY and KITE_ACCESS_TOKEN"):
        market_feed.build(world.settings(feed_source="kite", feed_tokens=(NIFTY,)))
    with pytest.raises(FeedConfigError, match="needs FEED_SYMBOLS"):
        market_feed.build(
            world.settings(
                alpaca_api_key=SecretStr("a"), alpaca_secret_key=SecretStr("b"), feed_source="alpaca"
            ),
        )


def test_market_feed_file_source_is_chosen_by_feed_file(world: World, tmp_path: Path) -> None:
    bars = history(instruments=2, bars=3)
    ticks = tmp_path / "ticks.jsonl"
    ticks.write_bytes(b"".join(line + b"\n" for line in tick_lines(bars)) + b"not json\n")
    run_main(market_feed.build(world.settings(feed_file=ticks, feed_rate=1e6, feed_source=None)))
    assert [m["id"] for m in world.topic("market.ticks")] == [decode_tick(x).id for x in tick_lines(bars)]
    assert len(world.topic("market.ticks.dlq")) == 1
