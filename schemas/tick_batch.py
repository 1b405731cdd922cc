"""The hot path's tick decoder: a batch of producer-form ticks in one parser call.

Range checks run in the parser and each distinct exchange-time string is
parsed once (:class:`TimeCache`); a bad message costs a second, full decode
(:func:`schemas.decoding.decode_tick`) only to name its reason. Bad input
never raises.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Final, NamedTuple

import msgspec

from schemas.decoding import (
    MAX_MESSAGE_BYTES,
    NaiveZone,
    check_size,
    decode_tick,
    size_error,
    to_utc,
    wrong_type,
)
from schemas.envelope import BrokerEnvelope
from schemas.errors import DecodeError
from schemas.events import MAX_PRICE, Ohlc
from schemas.topics import MARKET_TICKS


class _HotTick(msgspec.Struct, frozen=True, gc=False):
    """A tick's ``data`` as the hot path decodes it: range checks in the parser, time as text.

    Same fields and bounds as :class:`schemas.events.MarketTick`; the timestamp is parsed
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


class _HotTickIn(msgspec.Struct, frozen=True, gc=False, tag_field="type", tag="market_tick"):
    data: _HotTick
    id: str | None = None
    ts: datetime | None = None
    correlation_id: str | None = None
    source: str | None = None


_hot_decoder: Final = msgspec.json.Decoder(_HotTickIn | BrokerEnvelope)


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
            check_size(MARKET_TICKS, raw)
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
    # The last good time string and its time: ticks of one second come together.
    text: str | None = None
    moment = datetime.min.replace(tzinfo=UTC)  # never appended: the first good time replaces it
    for position, item in enumerate(decoded):
        if item.__class__ is not _HotTickIn:
            failed.append((position, item if isinstance(item, DecodeError) else wrong_type(item)))
            continue
        stamp = item.data.timestamp
        if stamp != text:
            try:
                moment = get_time(stamp)
            except DecodeError as err:
                failed.append((position, err))
                continue
            text = stamp
        stamps.append(moment)
        ticks.append(item)
        index.append(position)
    if max(map(len, values), default=0) > MAX_MESSAGE_BYTES:
        for i in reversed(range(len(index))):
            raw = values[index[i]]
            if len(raw) > MAX_MESSAGE_BYTES:
                failed.append((index[i], size_error(MARKET_TICKS, raw)))
                del ticks[i], stamps[i], index[i]
        failed.sort(key=lambda pair: pair[0])
    return TickBatch(ticks, stamps, index, failed)
