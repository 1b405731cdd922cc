"""Bytes <-> typed events. The only place JSON is read or written.

Decoding never returns a half-valid event: it returns a typed envelope or
raises :class:`schemas.errors.DecodeError` whose reason names the field.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, tzinfo
from typing import Annotated, Any, Final, NamedTuple

import msgspec

from schemas.envelope import (
    SCHEMA_VERSION,
    AnyEnvelope,
    BrokerEnvelope,
    DlqEnvelope,
    TickEnvelope,
    as_utc,
    event_id,
    tick_id,
)
from schemas.errors import DecodeError
from schemas.events import (
    MAX_PRICE,
    DlqMetadata,
    DlqRecord,
    ErrorType,
    FailureInfo,
    MarketTick,
    Ohlc,
    OriginalMessage,
    ReplayMetadata,
)
from schemas.explain import explain, too_deep
from schemas.topics import MARKET_TICKS, BrokerName, tick_key, topic_broker

MAX_MESSAGE_BYTES: Final = 64 * 1024
"""Messages larger than this are poison: no tick or order is near it."""

MAX_DLQ_VALUE_BYTES: Final = 64 * 1024
"""A dead letter keeps at most this much of the original value (plus its length and SHA-256)."""

REJECT_NAIVE: Final = "reject"
"""``naive_tz`` value that dead-letters timestamps without a UTC offset."""

NaiveZone = tzinfo | str
"""How to read a time without a UTC offset: a zone, or :data:`REJECT_NAIVE`."""


class RawMessage(NamedTuple):
    """A message as a source read it, before decoding.

    ``offset`` is the Kafka offset, or the line number of a tick file;
    ``headers`` are the Kafka record's, None when it has none.
    """

    topic: str
    key: bytes | None
    value: bytes
    partition: int | None = None
    offset: int | None = None
    timestamp: datetime | None = None
    headers: list[tuple[str, bytes]] | None = None


class RawBatch(NamedTuple):
    """Raw messages of one topic read together: the engine's item on the hot path.

    Columns, not one object per message: ``values[i]`` came from
    ``offsets[i]`` (a Kafka offset, or a file's line number) of
    ``partitions[i]`` (or ``partition`` for all), with ``keys[i]`` and
    ``timestamps[i]`` when the source has them.
    """

    topic: str
    values: list[bytes]
    offsets: list[int]
    partition: int | None = 0
    keys: list[bytes | None] | None = None
    partitions: list[int] | None = None
    timestamps: list[Any] | None = None

    def message(self, i: int) -> RawMessage:
        """The ``i``-th message as a :class:`RawMessage` (for dead letters)."""
        return RawMessage(
            self.topic,
            self.keys[i] if self.keys is not None else None,
            self.values[i],
            self.partitions[i] if self.partitions is not None else self.partition,
            self.offsets[i],
            self.timestamps[i] if self.timestamps is not None else None,
        )


class _TickIn(msgspec.Struct, frozen=True, tag_field="type", tag="market_tick"):
    """The producer form of a tick: only ``type`` and ``data`` are required."""

    data: MarketTick
    id: str | None = None
    ts: datetime | None = None
    correlation_id: str | None = None
    source: str | None = None


class _HotTick(msgspec.Struct, frozen=True):
    """A tick's ``data`` as the hot path decodes it: range checks in the parser, time as text.

    Same fields and bounds as :class:`MarketTick`; the timestamp is parsed
    once per distinct string (ticks of one second share it) by the batch
    decoder, which also normalises it to UTC.
    """

    instrument_token: Annotated[int, msgspec.Meta(gt=0, le=2**63 - 1)]
    last_price: Annotated[float, msgspec.Meta(gt=0.0, le=MAX_PRICE)]
    timestamp: str
    volume: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)] | None = None
    symbol: str | None = None
    ohlc: Ohlc | None = None
    depth: dict[str, Any] | None = None


class _HotTickIn(msgspec.Struct, frozen=True, tag_field="type", tag="market_tick"):
    data: _HotTick
    id: str | None = None
    ts: datetime | None = None
    correlation_id: str | None = None
    source: str | None = None


_encoder: Final = msgspec.json.Encoder()
_any_decoder: Final = msgspec.json.Decoder(AnyEnvelope)
# A union (not _TickIn alone) so that a missing "type" is an error and a
# message of another type on market.ticks is named as such.
_tick_decoder: Final = msgspec.json.Decoder(_TickIn | BrokerEnvelope)
_hot_decoder: Final = msgspec.json.Decoder(_HotTickIn | BrokerEnvelope)


def encode(envelope: AnyEnvelope) -> bytes:
    """Return the UTF-8 JSON bytes of ``envelope``."""
    return _encoder.encode(envelope)


def encode_lines(envelopes: list[Any]) -> bytes:
    """Return newline-delimited JSON of ``envelopes``, one per line, each line ending in a newline."""
    return _encoder.encode_lines(envelopes)


def to_builtins(envelope: AnyEnvelope) -> Any:
    """Return ``envelope`` as plain JSON-compatible Python values."""
    return msgspec.to_builtins(envelope)


def _check_size(topic: str, raw: bytes) -> None:
    if len(raw) > MAX_MESSAGE_BYTES:
        msg = f"message of {len(raw)} bytes exceeds the {MAX_MESSAGE_BYTES} byte limit"
        raise DecodeError(topic, msg)
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
    _check_size(topic, raw)
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
    _check_size(MARKET_TICKS, raw)
    try:
        tick_in = _tick_decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as err:
        raise _fail(MARKET_TICKS, raw, _TickIn | BrokerEnvelope, err) from err
    if not isinstance(tick_in, _TickIn):
        got = type(tick_in).__struct_config__.tag
        msg = f"unexpected event type {got!r} in field type, expected 'market_tick'"
        raise DecodeError(MARKET_TICKS, msg)
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


class TickBatch(NamedTuple):
    """Decoded ticks of one batch, in input order, and the messages that failed.

    ``ticks[i]`` is the producer-form message of ``values[positions[i]]``: its
    ``data`` has ``instrument_token``, ``last_price`` and the other
    :class:`MarketTick` fields, and ``times[i]`` is its exchange time in UTC.
    """

    ticks: list[Any]
    times: list[datetime]
    positions: list[int]
    failed: list[tuple[int, DecodeError]]


class TimeCache:
    """Exchange-time strings parsed once each, normalised to UTC (bounded)."""

    def __init__(self, naive_tz: NaiveZone = UTC, size: int = 4096) -> None:
        self._naive_tz = naive_tz
        self._size = size
        self._times: dict[str, datetime] = {}

    def get(self, text: str) -> datetime:
        """The UTC time ``text`` names.

        Raises:
            DecodeError: not an ISO-8601 time, no offset when naive times
                are rejected, or out of range in UTC.
        """
        moment = self._times.get(text)
        if moment is not None:
            return moment
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError as err:
            msg = f"field data.timestamp is not an ISO-8601 time: {text[:40]!r}"
            raise DecodeError(MARKET_TICKS, msg) from err
        try:
            moment = to_utc(parsed, self._naive_tz)
        except ValueError as err:
            msg = f"field data.timestamp {err}: {text[:40]!r}"
            raise DecodeError(MARKET_TICKS, msg) from err
        if len(self._times) >= self._size:
            self._times.clear()
        self._times[text] = moment
        return moment


def _decode_each(values: list[bytes]) -> list[Any]:
    decoded: list[Any] = []
    for raw in values:
        try:
            _check_size(MARKET_TICKS, raw)
            decoded.append(_hot_decoder.decode(raw))
        except DecodeError as err:
            decoded.append(err)
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
            decoded.append(_why_not_a_tick(raw))
    return decoded


def _why_not_a_tick(raw: bytes) -> DecodeError:
    """The reason the full tick decoder gives (the hot one checks the same bounds)."""
    try:
        decode_tick(raw)
    except DecodeError as err:
        return err
    return DecodeError(MARKET_TICKS, "message does not match its schema")


def decode_tick_batch(values: list[bytes], times: TimeCache | None = None) -> TickBatch:
    """Decode many producer-form ticks at once (one parser call when all are good).

    Returns the good ticks with their UTC times and positions in ``values``
    and, for each bad one, its position and a :class:`DecodeError`. Bad
    input never raises. ``times`` caches parsed timestamps across batches.
    """
    times = times if times is not None else TimeCache()
    decoded: list[Any] | None = None
    joined = b"\n".join(values)
    if values and b"\\u0000" not in joined:
        try:
            decoded = _hot_decoder.decode_lines(joined)
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
            decoded = None
        if decoded is not None and len(decoded) != len(values):
            decoded = None  # a value held a newline: decode one by one
    if decoded is None:
        decoded = _decode_each(values)
    ticks: list[Any] = []
    stamps: list[datetime] = []
    index: list[int] = []
    failed: list[tuple[int, DecodeError]] = []
    get_time = times.get
    for position, item in enumerate(decoded):
        if item.__class__ is not _HotTickIn:
            failed.append((position, item if isinstance(item, DecodeError) else _wrong_type(item)))
            continue
        try:
            stamps.append(get_time(item.data.timestamp))
        except DecodeError as err:
            failed.append((position, err))
            continue
        ticks.append(item)
        index.append(position)
    if max(map(len, values), default=0) > MAX_MESSAGE_BYTES:
        for i in reversed(range(len(index))):
            raw = values[index[i]]
            if len(raw) > MAX_MESSAGE_BYTES:
                failed.append((index[i], _size_error(raw)))
                del ticks[i], stamps[i], index[i]
        failed.sort(key=lambda pair: pair[0])
    return TickBatch(ticks, stamps, index, failed)


def _wrong_type(item: Any) -> DecodeError:
    got = type(item).__struct_config__.tag
    msg = f"unexpected event type {got!r} in field type, expected 'market_tick'"
    return DecodeError(MARKET_TICKS, msg)


def _size_error(raw: bytes) -> DecodeError:
    msg = f"message of {len(raw)} bytes exceeds the {MAX_MESSAGE_BYTES} byte limit"
    return DecodeError(MARKET_TICKS, msg)


def decode_as(raw: bytes, topic: str, expected: type[AnyEnvelope]) -> AnyEnvelope:
    """Decode ``raw`` and require its type to be ``expected``.

    Raises:
        DecodeError: as :func:`decode`, or the message has another type.
    """
    envelope = decode(raw, topic)
    if not isinstance(envelope, expected):
        got = type(envelope).__struct_config__.tag
        want = expected.__struct_config__.tag
        msg = f"unexpected event type {got!r} in field type, expected {want!r}"
        raise DecodeError(topic, msg)
    return envelope


def original_message(
    key: bytes | str | None, value: bytes, headers: dict[str, str] | None = None
) -> OriginalMessage:
    """Keep a message as it arrived: its value as text, or base64 if not UTF-8.

    At most :data:`MAX_DLQ_VALUE_BYTES` of the value are kept (``truncated``
    then says so); its full length and SHA-256 are always recorded.
    """
    text_key = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
    if text_key is not None and len(text_key) > MAX_DLQ_VALUE_BYTES:
        text_key = text_key[:MAX_DLQ_VALUE_BYTES]
    kept = value[:MAX_DLQ_VALUE_BYTES]
    common: dict[str, Any] = {
        "key": text_key,
        "headers": headers or {},
        "truncated": len(kept) < len(value),
        "value_length": len(value),
        "value_sha256": hashlib.sha256(value).hexdigest(),
    }
    try:
        return OriginalMessage(value=kept.decode("utf-8"), **common)
    except UnicodeDecodeError:
        encoded = base64.b64encode(kept).decode("ascii")
        return OriginalMessage(value=encoded, value_encoding="base64", **common)


def original_value(message: OriginalMessage) -> bytes:
    """Return the bytes of a dead letter's original value."""
    if message.value_encoding == "base64":
        return base64.b64decode(message.value)
    return message.value.encode("utf-8")


REPLAYABLE: Final[frozenset[str]] = frozenset({"transient", "infrastructure", "rate_limit"})


def dead_letter(  # one argument per contract field group
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
            can_replay=error_type in REPLAYABLE and not original.truncated,
            requires_manual_review=error_type in ("poison", "business", "authentication"),
        ),
    )
    ident = event_id("dlq_record", topic, partition, offset, original.value_sha256)
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


def poison_letter(
    raw: RawMessage, *, error_class: str, error_message: str, service_name: str, dlq_timestamp: datetime
) -> DlqEnvelope:
    """Build the dead letter of ``raw``, a message that cannot be decoded (poison: never replayed).

    Its position (partition, offset, timestamp) is ``raw``'s; its broker is
    the one owning ``raw.topic`` (:func:`schemas.topics.topic_broker`).
    """
    return dead_letter(
        topic=raw.topic,
        key=raw.key,
        value=raw.value,
        error_type="poison",
        error_class=error_class,
        error_message=error_message,
        service_name=service_name,
        dlq_timestamp=dlq_timestamp,
        partition=raw.partition,
        offset=raw.offset,
        original_timestamp=raw.timestamp,
        broker=topic_broker(raw.topic),
    )
