"""Bytes <-> typed events. The only place JSON is read or written.

Decoding never returns a half-valid event: it returns a typed envelope or
raises :class:`schemas.errors.DecodeError` whose reason names the field.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any, Final, NamedTuple

import msgspec

from schemas.envelope import (
    SCHEMA_VERSION,
    AnyEnvelope,
    BrokerEnvelope,
    BrokerName,
    DlqEnvelope,
    TickEnvelope,
    as_utc,
    event_id,
    tick_id,
)
from schemas.errors import DecodeError
from schemas.events import (
    DlqMetadata,
    DlqRecord,
    ErrorType,
    FailureInfo,
    MarketTick,
    OriginalMessage,
    ReplayMetadata,
)
from schemas.topics import MARKET_TICKS, tick_key

MAX_MESSAGE_BYTES: Final = 64 * 1024
"""Messages larger than this are poison: no tick or order is near it."""


class RawMessage(NamedTuple):
    """A message as a source read it, before decoding.

    ``offset`` is the Kafka offset, or the line number of a tick file.
    """

    topic: str
    key: bytes | None
    value: bytes
    partition: int | None = None
    offset: int | None = None
    timestamp: datetime | None = None


class _TickIn(msgspec.Struct, frozen=True, tag_field="type", tag="market_tick"):
    """The producer form of a tick: only ``type`` and ``data`` are required."""

    data: MarketTick
    id: str | None = None
    ts: datetime | None = None
    correlation_id: str | None = None
    source: str | None = None


_encoder: Final = msgspec.json.Encoder()
_any_decoder: Final = msgspec.json.Decoder(AnyEnvelope)
# A union (not _TickIn alone) so that a missing "type" is an error and a
# message of another type on market.ticks is named as such.
_tick_decoder: Final = msgspec.json.Decoder(_TickIn | BrokerEnvelope)


def encode(envelope: AnyEnvelope) -> bytes:
    """Return the UTF-8 JSON bytes of ``envelope``."""
    return _encoder.encode(envelope)


def to_builtins(envelope: AnyEnvelope) -> Any:
    """Return ``envelope`` as plain JSON-compatible Python values."""
    return msgspec.to_builtins(envelope)


def _reason(err: Exception) -> str:
    return str(err).replace("`", "")


def _check_size(topic: str, raw: bytes) -> None:
    if len(raw) > MAX_MESSAGE_BYTES:
        msg = f"message of {len(raw)} bytes exceeds the {MAX_MESSAGE_BYTES} byte limit"
        raise DecodeError(topic, msg)


def decode(raw: bytes, topic: str) -> AnyEnvelope:
    """Decode a full envelope of any event type read from ``topic``.

    :raises DecodeError: not UTF-8 JSON (invalid UTF-8 inside a string
        included), unknown ``type``, or a missing, wrong-typed or
        out-of-range field (the reason names it).
    """
    _check_size(topic, raw)
    try:
        envelope: AnyEnvelope = _any_decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as err:
        raise DecodeError(topic, _reason(err)) from err
    return envelope


def decode_tick(raw: bytes, *, source: str = "market_feed", derive_id: bool = True) -> TickEnvelope:
    """Decode a tick in producer form and complete its envelope.

    Producers may send only ``{"type": "market_tick", "data": {...}}``; a
    missing id is derived from the tick itself, the key is the instrument
    token and the creation time defaults to the tick's exchange time.

    ``derive_id=False`` leaves a missing id (and correlation id) empty, for
    flows that derive it only for the few ticks that cause an event (see
    :func:`schemas.envelope.with_tick_id`); such a tick must not be published.

    :raises DecodeError: as :func:`decode`, for topic ``market.ticks``.
    """
    _check_size(MARKET_TICKS, raw)
    try:
        tick_in = _tick_decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as err:
        raise DecodeError(MARKET_TICKS, _reason(err)) from err
    if not isinstance(tick_in, _TickIn):
        got = type(tick_in).__struct_config__.tag
        msg = f"unexpected event type {got!r} on this topic, expected 'market_tick' - at $.type"
        raise DecodeError(MARKET_TICKS, msg)
    tick = tick_in.data
    if tick_in.id or derive_id:
        ident = tick_in.id or tick_id(tick)
        created = as_utc(tick_in.ts or tick.timestamp)
    else:
        ident, created = "", tick_in.ts or tick.timestamp
    return TickEnvelope(
        id=ident,
        ts=created,
        broker="shared",
        correlation_id=tick_in.correlation_id or ident,
        causation_id=None,
        source=tick_in.source or source,
        version=SCHEMA_VERSION,
        key=tick_key(tick.instrument_token),
        data=tick,
    )


def decode_as(raw: bytes, topic: str, expected: type[AnyEnvelope]) -> AnyEnvelope:
    """Decode ``raw`` and require its type to be ``expected``.

    :raises DecodeError: as :func:`decode`, or the message has another type.
    """
    envelope = decode(raw, topic)
    if not isinstance(envelope, expected):
        got = type(envelope).__struct_config__.tag
        want = expected.__struct_config__.tag
        msg = f"unexpected event type {got!r} on this topic, expected {want!r} - at $.type"
        raise DecodeError(topic, msg)
    return envelope


def original_message(
    key: bytes | str | None, value: bytes, headers: dict[str, str] | None = None
) -> OriginalMessage:
    """Keep a message as it arrived: its value as text, or base64 if not UTF-8."""
    text_key = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
    try:
        return OriginalMessage(key=text_key, value=value.decode("utf-8"), headers=headers or {})
    except UnicodeDecodeError:
        encoded = base64.b64encode(value).decode("ascii")
        return OriginalMessage(key=text_key, value=encoded, headers=headers or {}, value_encoding="base64")


def original_value(message: OriginalMessage) -> bytes:
    """Return the bytes of a dead letter's original value."""
    if message.value_encoding == "base64":
        return base64.b64decode(message.value)
    return message.value.encode("utf-8")


REPLAYABLE: Final[frozenset[str]] = frozenset({"transient", "infrastructure", "rate_limit"})


def dead_letter(  # noqa: PLR0913 - one argument per contract field group
    *,
    topic: str,
    key: bytes | str | None,
    value: bytes,
    error_type: ErrorType,
    error_class: str,
    error_message: str,
    service_name: str,
    dlq_timestamp: datetime,
    partition: int | None = None,
    offset: int | None = None,
    original_timestamp: datetime | None = None,
    retry_count: int = 0,
    broker: BrokerName = "shared",
) -> DlqEnvelope:
    """Build the ``dlq_record`` envelope for a message that failed on ``topic``.

    Poison (undecodable) and authentication failures are not replayable;
    transient, infrastructure and rate-limit ones are; business failures
    need a human to look first.
    """
    original = original_message(key, value)
    record = DlqRecord(
        dlq_metadata=DlqMetadata(
            original_topic=topic,
            original_partition=partition,
            original_offset=offset,
            original_timestamp=original_timestamp,
            dlq_timestamp=as_utc(dlq_timestamp),
            service_name=service_name,
        ),
        failure_info=FailureInfo(
            error_type=error_type,
            error_class=error_class,
            error_message=error_message,
            retry_count=retry_count,
        ),
        original_message=original,
        replay_metadata=ReplayMetadata(
            can_replay=error_type in REPLAYABLE,
            requires_manual_review=error_type in ("poison", "business", "authentication"),
        ),
    )
    ident = event_id("dlq_record", topic, partition, offset, original.value)
    return DlqEnvelope(
        id=ident,
        ts=as_utc(dlq_timestamp),
        broker=broker,
        correlation_id=ident,
        causation_id=None,
        source=service_name,
        version=SCHEMA_VERSION,
        key=original.key or "",
        data=record,
    )
