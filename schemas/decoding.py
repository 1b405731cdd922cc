"""Bytes -> typed events, one message at a time; the full tick decoder and UTC normalisation.

Decoding never returns a half-valid event: it returns a typed envelope or
raises :class:`schemas.errors.DecodeError` whose reason names the field.
The batch decoder of the hot path is :mod:`schemas.tick_batch`.
"""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from typing import Any, Final

import msgspec

from schemas.envelope import SCHEMA_VERSION, AnyEnvelope, BrokerEnvelope, TickEnvelope, as_utc, tick_id
from schemas.errors import DecodeError
from schemas.events import MarketTick
from schemas.explain import explain, too_deep
from schemas.topics import MARKET_TICKS, tick_key

MAX_MESSAGE_BYTES: Final = 64 * 1024
"""Messages larger than this are poison: no tick or order is near it."""

REJECT_NAIVE: Final = "reject"
"""``naive_tz`` value that dead-letters timestamps without a UTC offset."""

NaiveZone = tzinfo | str
"""How to read a time without a UTC offset: a zone, or :data:`REJECT_NAIVE`."""


class _TickIn(msgspec.Struct, frozen=True, gc=False, tag_field="type", tag="market_tick"):
    """The producer form of a tick: only ``type`` and ``data`` are required."""

    data: MarketTick
    id: str | None = None
    ts: datetime | None = None
    correlation_id: str | None = None
    source: str | None = None


_any_decoder: Final = msgspec.json.Decoder(AnyEnvelope)
# A union (not _TickIn alone) so that a missing "type" is an error and a
# message of another type on market.ticks is named as such.
_tick_decoder: Final = msgspec.json.Decoder(_TickIn | BrokerEnvelope)


def size_error(topic: str, raw: bytes) -> DecodeError:
    """The error for a message over :data:`MAX_MESSAGE_BYTES`."""
    msg = f"message of {len(raw)} bytes exceeds the {MAX_MESSAGE_BYTES} byte limit"
    return DecodeError(topic, msg)


def check_size(topic: str, raw: bytes) -> None:
    """Refuse a message too large, holding a NUL, or nested too deep to explain.

    Raises:
        DecodeError: the reason says which.
    """
    if len(raw) > MAX_MESSAGE_BYTES:
        raise size_error(topic, raw)
    if b"\\u0000" in raw:
        # Text columns (PostgreSQL) cannot hold NUL, and no contract field needs it.
        raise DecodeError(topic, "NUL character in a text field")
    if too_deep(raw):
        raise DecodeError(topic, explain(raw, Any, ValueError()))


def _fail(topic: str, raw: bytes, target: Any, err: Exception) -> DecodeError:
    return DecodeError(topic, explain(raw, target, err))


def to_utc(moment: datetime, naive_tz: NaiveZone = UTC) -> datetime:
    """Return ``moment`` as an aware UTC time.

    A time without an offset is read in ``naive_tz``.

    Raises:
        ValueError: ``moment`` is naive and ``naive_tz`` is
            :data:`REJECT_NAIVE`, or it cannot be expressed in UTC (e.g.
            ``9999-12-31T23:59:59-05:00``); the message says which.
    """
    if moment.tzinfo is None:
        if isinstance(naive_tz, str):
            msg = "has no UTC offset and NAIVE_TIMEZONE is 'reject'"
            raise ValueError(msg)
        moment = moment.replace(tzinfo=naive_tz)
    elif moment.tzinfo is UTC:
        return moment
    try:
        return moment.astimezone(UTC)
    except (OverflowError, ValueError) as err:
        msg = "cannot be converted to UTC (out of range)"
        raise ValueError(msg) from err


def decode(raw: bytes, topic: str) -> AnyEnvelope:
    """Decode a full envelope of any event type read from ``topic``.

    Raises:
        DecodeError: not UTF-8 JSON (invalid UTF-8 inside a string
            included), unknown ``type``, or a missing, wrong-typed or
            out-of-range field (the reason names it, in the project's words).
    """
    check_size(topic, raw)
    try:
        envelope: AnyEnvelope = _any_decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as err:
        raise _fail(topic, raw, AnyEnvelope, err) from err
    return envelope


def _normalised(tick_in: _TickIn, naive_tz: NaiveZone) -> MarketTick:
    tick = tick_in.data
    stamp = tick.timestamp
    if stamp.tzinfo is not UTC:
        try:
            msgspec.structs.force_setattr(tick, "timestamp", to_utc(stamp, naive_tz))
        except ValueError as err:
            msg = f"field data.timestamp {err}: {stamp.isoformat()!r}"
            raise DecodeError(MARKET_TICKS, msg) from err
    return tick


def decode_tick(
    raw: bytes, *, source: str = "market_feed", derive_id: bool = True, naive_tz: NaiveZone = UTC
) -> TickEnvelope:
    """Decode a tick in producer form and complete its envelope.

    Producers may send only ``{"type": "market_tick", "data": {...}}``; a
    missing id is derived from the tick itself, the key is the instrument
    token and the creation time defaults to the tick's exchange time. The
    exchange time is normalised to UTC (a naive one read in ``naive_tz``).

    ``derive_id=False`` leaves a missing id (and correlation id) empty, for
    flows that derive it only for the few ticks that cause an event (see
    :func:`schemas.envelope.with_tick_id`); such a tick must not be published.

    Raises:
        DecodeError: as :func:`decode`, for topic ``market.ticks``.
    """
    check_size(MARKET_TICKS, raw)
    try:
        tick_in = _tick_decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as err:
        raise _fail(MARKET_TICKS, raw, _TickIn | BrokerEnvelope, err) from err
    if not isinstance(tick_in, _TickIn):
        raise wrong_type(tick_in)
    return complete_tick(tick_in, _normalised(tick_in, naive_tz), source=source, derive_id=derive_id)


def complete_tick(tick_in: Any, tick: MarketTick, *, source: str, derive_id: bool) -> TickEnvelope:
    """The full envelope of a decoded producer-form tick (see :func:`decode_tick`)."""
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


def wrong_type(item: Any, topic: str = MARKET_TICKS, want: object = "market_tick") -> DecodeError:
    """The error for a decoded event of another type than ``want`` on ``topic``."""
    got = type(item).__struct_config__.tag
    msg = f"unexpected event type {got!r} in field type, expected {want!r}"
    return DecodeError(topic, msg)


def decode_as(raw: bytes, topic: str, expected: type[AnyEnvelope]) -> AnyEnvelope:
    """Decode ``raw`` and require its type to be ``expected``.

    Raises:
        DecodeError: as :func:`decode`, or the message has another type.
    """
    envelope = decode(raw, topic)
    if not isinstance(envelope, expected):
        raise wrong_type(envelope, topic, expected.__struct_config__.tag)
    return envelope
