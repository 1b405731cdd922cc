from datetime import UTC, datetime

import pytest

from connectors.marketdata.errors import FeedMessageError, KiteFrameError, KitePacketError
from connectors.marketdata.kite_protocol import (
    decode_binary,
    decode_text,
    parse_packet,
    price_divisor,
    split_packets,
)
from schemas.events import Ohlc
from tests.marketdata import kite_frames as kf

NOW = datetime(2024, 6, 6, 4, 0, tzinfo=UTC)
NSE_INFY = 408065  # low byte 1: NSE
NIFTY = 256265  # low byte 9: indices
CDS_USDINR = (41231 << 8) | 3
BCD_USDINR = (7321 << 8) | 6
MCX_GOLD = (5001 << 8) | 7
EXCHANGE_TS = 1717646705  # 2024-06-06T04:05:05Z


@pytest.mark.parametrize(
    ("token", "raw", "price"),
    [
        (NSE_INFY, 150025, 1500.25),
        (MCX_GOLD, 7215000, 72150.0),
        (CDS_USDINR, 834567890, 83.456789),
        (BCD_USDINR, 834567, 83.4567),
        (NIFTY, 2265010, 22650.10),
    ],
)
def test_ltp_price_uses_the_segment_divisor(token: int, raw: int, price: float) -> None:
    tick = parse_packet(kf.ltp(token, raw), received_at=NOW)
    assert tick.instrument_token == token
    assert tick.last_price == pytest.approx(price, abs=1e-12)
    assert tick.timestamp == NOW
    assert tick.ohlc is None and tick.volume is None and tick.depth is None


def test_divisors() -> None:
    assert price_divisor(NSE_INFY) == 100
    assert price_divisor(CDS_USDINR) == 10_000_000
    assert price_divisor(BCD_USDINR) == 10_000


def test_index_quote_orders_high_low_open_close() -> None:
    packet = kf.index_quote(NIFTY, 2265010, high=2270000, low=2250050, open_=2255000, close=2248000)
    tick = parse_packet(packet, received_at=NOW, symbols={NIFTY: "NIFTY 50"})
    assert tick.last_price == 22650.10
    assert tick.ohlc == Ohlc(open=22550.0, high=22700.0, low=22500.5, close=22480.0)
    assert tick.timestamp == NOW
    assert tick.symbol == "NIFTY 50"


def test_index_full_takes_the_exchange_timestamp() -> None:
    packet = kf.index_full(NIFTY, 2265010, 2270000, 2250050, 2255000, 2248000, EXCHANGE_TS)
    tick = parse_packet(packet, received_at=NOW)
    assert tick.timestamp == datetime(2024, 6, 6, 4, 5, 5, tzinfo=UTC)


def test_quote_mode_has_volume_and_ohlc() -> None:
    packet = kf.quote(NSE_INFY, 150025, volume=1234567, ohlc=(149000, 151050, 148500, 149900))
    tick = parse_packet(packet, received_at=NOW)
    assert tick.last_price == 1500.25
    assert tick.volume == 1234567
    assert tick.ohlc == Ohlc(open=1490.0, high=1510.5, low=1485.0, close=1499.0)
    assert tick.timestamp == NOW
    assert tick.depth is None


def test_full_mode_depth_and_exchange_time_cds() -> None:
    depth = [(100 + i, 834500000 - i * 25000, i + 1) for i in range(5)]
    depth += [(200 + i, 834600000 + i * 25000, 10 + i) for i in range(5)]
    packet = kf.full(
        CDS_USDINR,
        834567890,
        volume=99,
        ohlc=(834000000, 835000000, 833000000, 834100000),
        ts=EXCHANGE_TS,
        depth=depth,
    )
    tick = parse_packet(packet, received_at=NOW)
    assert tick.last_price == pytest.approx(83.456789, abs=1e-12)
    assert tick.timestamp == datetime(2024, 6, 6, 4, 5, 5, tzinfo=UTC)
    assert tick.ohlc == Ohlc(open=83.4, high=83.5, low=83.3, close=83.41)
    assert tick.depth is not None
    assert tick.depth["buy"][0] == {"quantity": 100, "price": 83.45, "orders": 1}
    assert tick.depth["buy"][4] == {"quantity": 104, "price": 83.44, "orders": 5}
    assert tick.depth["sell"][0] == {"quantity": 200, "price": 83.46, "orders": 10}
    assert tick.depth["sell"][4]["price"] == pytest.approx(83.47, abs=1e-12)
    assert len(tick.depth["buy"]) == len(tick.depth["sell"]) == 5


def test_full_mode_without_exchange_time_falls_back_to_the_clock() -> None:
    depth = [(0, 0, 0)] * 10
    packet = kf.full(NSE_INFY, 150025, volume=1, ohlc=(0, 0, 0, 0), ts=0, depth=depth)
    assert parse_packet(packet, received_at=NOW).timestamp == NOW


def test_heartbeat_decodes_to_nothing() -> None:
    decoded = decode_binary(b"\x00", received_at=NOW)
    assert decoded.ticks == () and decoded.errors == ()


def test_one_bad_packet_does_not_spoil_its_neighbours() -> None:
    bad = b"\x00\x06\x3a\x01" + b"\x00" * 6  # 10 bytes: no such mode
    frame = kf.frame(kf.ltp(NSE_INFY, 150025), bad, kf.ltp(NIFTY, 2265010))
    decoded = decode_binary(frame, received_at=NOW)
    assert [t.last_price for t in decoded.ticks] == [1500.25, 22650.10]
    (err,) = decoded.errors
    assert isinstance(err, KitePacketError)
    assert "packet length 10" in str(err)
    assert err.packet == bad
    assert err.token == 0x00063A01


def test_non_positive_price_is_a_packet_error() -> None:
    with pytest.raises(KitePacketError, match="last_price must be > 0, got 0"):
        parse_packet(kf.ltp(NSE_INFY, 0), received_at=NOW)
    with pytest.raises(KitePacketError, match="got -5"):
        parse_packet(kf.ltp(NSE_INFY, -5), received_at=NOW)


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (b"\x00\x02\x00\x08" + b"\x00" * 8, "ends before packet 2/2"),
        (b"\x00\x01\x00\x08" + b"\x00" * 4, "declares 8 bytes but only 4 remain"),
        (kf.frame(kf.ltp(NSE_INFY, 1)) + b"\xff", "1 trailing byte"),
    ],
)
def test_broken_framing_is_a_frame_error(frame: bytes, reason: str) -> None:
    with pytest.raises(KiteFrameError, match=reason):
        split_packets(frame)
    decoded = decode_binary(frame, received_at=NOW)
    assert decoded.ticks == ()
    assert isinstance(decoded.errors[0], KiteFrameError)
    assert decoded.errors[0].packet == frame


def test_text_frames() -> None:
    order = decode_text('{"type": "order", "data": {"order_id": "1", "status": "COMPLETE"}}')
    assert order.type == "order" and order.data["status"] == "COMPLETE"
    error = decode_text('{"type": "error", "data": "Invalid access token"}')
    assert error.type == "error" and error.data == "Invalid access token"
    with pytest.raises(FeedMessageError, match="decode text frame: not JSON"):
        decode_text("{oops")
    with pytest.raises(FeedMessageError, match="string 'type'"):
        decode_text("[1, 2]")
