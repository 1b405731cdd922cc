"""The contract as code: round trips, rejections with named fields, ids, topics."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.codec import (
    RawMessage,
    dead_letter,
    decode,
    decode_as,
    decode_tick,
    encode,
    original_value,
    poison_letter,
)
from schemas.envelope import (
    FilledEnvelope,
    SignalEnvelope,
    TickEnvelope,
    envelop,
    event_id,
    tick_id,
    uuid5_of,
)
from schemas.errors import DecodeError
from schemas.events import MarketTick, OrderFilled, TradingSignal
from schemas.topics import all_topics, dlq_topic, original_topic, topic_broker

prices = st.floats(min_value=0.01, max_value=1e6, allow_nan=False, allow_infinity=False)
tokens = st.integers(min_value=1, max_value=2**31)
moments = st.datetimes(
    min_value=datetime(2000, 1, 1),
    max_value=datetime(2100, 1, 1),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30))]),
)


def tick_bytes(data: dict) -> bytes:
    return orjson.dumps({"type": "market_tick", "data": data})


@given(token=tokens, price=prices, when=moments, volume=st.none() | st.integers(0, 10**12))
def test_tick_round_trip(token: int, price: float, when: datetime, volume: int | None) -> None:
    data = {"instrument_token": token, "last_price": price, "timestamp": when.isoformat()}
    if volume is not None:
        data["volume"] = volume
    envelope = decode_tick(tick_bytes(data))
    assert envelope.key == str(token)
    assert envelope.data.last_price == price
    assert envelope.correlation_id == envelope.id
    assert decode(encode(envelope), "market.ticks") == envelope


@given(token=tokens, price=prices, when=moments, qty=st.integers(1, 10**6), conf=st.floats(0, 1))
def test_signal_and_fill_round_trip(token: int, price: float, when: datetime, qty: int, conf: float) -> None:
    tick = decode_tick(
        tick_bytes({"instrument_token": token, "last_price": price, "timestamp": when.isoformat()})
    )
    signal = TradingSignal("s1", token, "BUY", qty, price, when, conf, {"m": 0.5})
    env = envelop(signal, id="sig", ts=when, broker="paper", cause=tick, source="t", key=f"s1:{token}")
    assert isinstance(env, SignalEnvelope)
    assert env.correlation_id == tick.id and env.causation_id == tick.id
    assert decode(encode(env), "paper.signals.raw") == env
    fill = OrderFilled("o1", "s1", token, "SELL", qty, when, "zerodha", "dry_run", price, 1.25)
    fenv = envelop(fill, id="f", ts=when, broker="zerodha", cause=env, source="t", key="s1")
    assert decode_as(encode(fenv), "zerodha.orders.filled", FilledEnvelope) == fenv
    assert fenv.correlation_id == tick.id


GOOD = {"instrument_token": 5, "last_price": 100.0, "timestamp": "2024-01-02T09:15:00+05:30"}


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b"not json", "malformed"),
        (b"\xff\xfe\x00garbage", "invalid UTF-8"),
        (tick_bytes({k: v for k, v in GOOD.items() if k != "last_price"}), "last_price"),
        (tick_bytes({**GOOD, "last_price": "100"}), "field data.last_price must be a number, got a string"),
        (tick_bytes({**GOOD, "last_price": 0}), "last_price must be"),
        (tick_bytes({**GOOD, "last_price": -3.5}), "last_price must be"),
        (tick_bytes({**GOOD, "last_price": 1e15}), "last_price must be"),
        (
            b'{"type":"market_tick","data":{"instrument_token":5,"last_price":NaN,"timestamp":"2024-01-02T09:15:00"}}',
            "malformed",
        ),
        (
            b'{"type":"market_tick","data":{"instrument_token":5,"last_price":1e999,"timestamp":"2024-01-02T09:15:00"}}',
            "field data.last_price must be a finite number",
        ),
        (tick_bytes({**GOOD, "instrument_token": 0}), "field data.instrument_token must be > 0, got 0"),
        (
            tick_bytes({**GOOD, "instrument_token": True}),
            "field data.instrument_token must be an integer, got a boolean",
        ),
        (
            tick_bytes({**GOOD, "timestamp": "yesterday"}),
            "field data.timestamp is not an ISO-8601 time: 'yesterday'",
        ),
        (
            orjson.dumps({"type": "quote_update", "data": GOOD}),
            "unknown event type 'quote_update' in field type",
        ),
        (orjson.dumps({"data": GOOD}), "missing required field type"),
        (tick_bytes({**GOOD, "symbol": "x" * 70_000}), "byte limit"),
    ],
)
def test_bad_ticks_are_rejected_with_the_field_named(raw: bytes, field: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode_tick(raw)
    assert field in info.value.reason
    assert info.value.topic == "market.ticks"


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_escape_as_other_errors(raw: bytes) -> None:
    try:
        decode_tick(raw)
    except DecodeError:
        pass


@given(price=st.floats(allow_nan=True, allow_infinity=True))
def test_only_finite_positive_bounded_prices_make_ticks(price: float) -> None:
    ok = math.isfinite(price) and 0 < price <= 1e9
    try:
        MarketTick(1, price, datetime(2024, 1, 1))
    except ValueError as err:
        assert not ok
        assert "last_price" in str(err)
    else:
        assert ok


def test_tick_ids_are_deterministic_and_distinct() -> None:
    when = datetime(2024, 1, 2, 9, 15, tzinfo=UTC)
    a, b = MarketTick(1, 100.0, when), MarketTick(1, 100.5, when)
    assert tick_id(a) == tick_id(MarketTick(1, 100.0, when))
    assert tick_id(a) != tick_id(b)
    assert decode_tick(tick_bytes(GOOD)).id == decode_tick(tick_bytes(GOOD)).id


NAMESPACE = uuid.UUID("6f1c6a52-4d1e-5b8e-9a57-a1f4a9d0a7e1")


@given(st.text())
def test_event_ids_are_the_standard_uuid5_of_their_name(name: str) -> None:
    try:
        name.encode()
    except UnicodeEncodeError:  # a lone surrogate: no UTF-8 name, no id
        return
    assert uuid5_of(name) == str(uuid.uuid5(NAMESPACE, name))
    assert event_id("order", name) == str(uuid.uuid5(NAMESPACE, f"order|{name}"))


def test_the_tick_id_of_a_known_tick_is_fixed() -> None:
    when = datetime(2024, 1, 2, 9, 15, tzinfo=UTC)
    expected = uuid.uuid5(NAMESPACE, "market_tick|1|2024-01-02T09:15:00+00:00|100.0")
    assert tick_id(MarketTick(1, 100.0, when)) == str(expected)
    assert tick_id(MarketTick(1, 100.0, when), 2) == str(
        uuid.uuid5(NAMESPACE, "market_tick|1|2024-01-02T09:15:00+00:00|100.0|2")
    )


def test_producer_supplied_id_is_kept() -> None:
    raw = orjson.dumps({"type": "market_tick", "id": "abc", "data": GOOD})
    assert decode_tick(raw).id == "abc"


def test_dead_letter_keeps_non_utf8_as_base64() -> None:
    raw = b"\xff\x00bad"
    letter = dead_letter(
        topic="market.ticks",
        key=b"5",
        value=raw,
        error_type="poison",
        error_class="DecodeError",
        error_message="malformed",
        service_name="t",
        dlq_timestamp=datetime(2024, 1, 1, tzinfo=UTC),
        offset=3,
    )
    assert letter.data.original_message.value_encoding == "base64"
    assert original_value(letter.data.original_message) == raw
    assert letter.data.replay_metadata.can_replay is False
    assert decode(encode(letter), "market.ticks.dlq") == letter


def test_transient_dead_letters_are_replayable() -> None:
    letter = dead_letter(
        topic="paper.orders.filled",
        key="s1",
        value=b"{}",
        error_type="transient",
        error_class="ConnectionError",
        error_message="redis down",
        service_name="t",
        dlq_timestamp=datetime(2024, 1, 1, tzinfo=UTC),
    )
    assert letter.data.replay_metadata.can_replay is True
    assert letter.data.replay_metadata.requires_manual_review is False


def test_topics() -> None:
    topics = all_topics()
    assert len(topics) == len(set(topics)) == 2 * (1 + 2 * 7)
    assert "paper.signals.raw" in topics and "zerodha.pnl.snapshots.dlq" in topics
    assert original_topic(dlq_topic("paper.orders.filled")) == "paper.orders.filled"
    with pytest.raises(ValueError, match="not a dead-letter"):
        original_topic("paper.orders.filled")


def test_tick_envelope_decodes_only_as_tick() -> None:
    env = decode_tick(tick_bytes(GOOD))
    assert isinstance(decode(encode(env), "market.ticks"), TickEnvelope)
    with pytest.raises(DecodeError, match="expected 'order_filled'"):
        decode_as(encode(env), "paper.orders.filled", FilledEnvelope)


def test_a_full_envelope_of_another_type_is_named_on_market_ticks() -> None:
    when = datetime(2024, 1, 2, tzinfo=UTC)
    fill = OrderFilled("o1", "s1", 5, "BUY", 1, when, "paper", "paper", 100.0, 0.1)
    env = envelop(fill, id="f", ts=when, broker="paper", cause=None, source="t", key="s1")
    with pytest.raises(DecodeError, match="unexpected event type 'order_filled'"):
        decode_tick(encode(env))


def test_topic_broker_names_the_owner_of_a_topic_and_its_dead_letters() -> None:
    assert topic_broker("paper.orders.filled") == "paper"
    assert topic_broker("zerodha.signals.raw.dlq") == "zerodha"
    assert topic_broker("market.ticks") == "shared"
    assert topic_broker("papers.orders") == "shared"


def test_poison_letter_keeps_the_position_and_owner_of_the_message() -> None:
    at = datetime(2024, 1, 2, tzinfo=UTC)
    raw = RawMessage("paper.orders.filled", b"s1", b"{not json", partition=3, offset=41, timestamp=at)
    letter = poison_letter(
        raw, error_class="DecodeError", error_message="bad json", service_name="test", dlq_timestamp=at
    )
    assert letter.broker == "paper"
    assert letter.key == "s1"
    meta, failure = letter.data.dlq_metadata, letter.data.failure_info
    assert (meta.original_topic, meta.original_partition, meta.original_offset) == (
        "paper.orders.filled",
        3,
        41,
    )
    assert meta.original_timestamp == at
    assert (failure.error_type, failure.error_class, failure.error_message) == (
        "poison",
        "DecodeError",
        "bad json",
    )
    assert letter.data.replay_metadata.can_replay is False
