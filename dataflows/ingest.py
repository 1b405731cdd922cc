"""Decode raw messages into typed envelopes; failures become dead letters.

``decode_ticks`` and ``decode_events`` take a stream of
:class:`schemas.codec.RawMessage` and return two streams: the typed
envelopes, and :class:`schemas.envelope.Outbound` dead letters for
``<topic>.dlq`` with the reason, counted in ``alpha_panda_dlq_messages``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Stream

from dataflows.metrics import BAD_HEADERS, DLQ_MESSAGES
from dataflows.tick_time import Stamped, epoch_ms
from schemas.codec import RawMessage, decode_as, decode_tick, poison_letter
from schemas.envelope import AnyEnvelope, Outbound, TickEnvelope
from schemas.errors import DecodeError
from schemas.headers import TICK_CREATED, HeaderError, tick_created_ms
from schemas.topics import dlq_topic


def _dead(raw: RawMessage, err: DecodeError, service: str, now: datetime) -> Outbound:
    letter = poison_letter(
        raw, error_class=type(err).__name__, error_message=err.reason, service_name=service, dlq_timestamp=now
    )
    DLQ_MESSAGES.labels(raw.topic, letter.broker, "poison").inc()
    return Outbound(dlq_topic(raw.topic), letter.key, letter)


def dead_tick(
    raw: RawMessage, err: DecodeError, service: str, dlq_clock: Callable[[RawMessage], datetime]
) -> Outbound:
    """The dead letter of a tick that failed to decode (counted in ``alpha_panda_dlq_messages``)."""
    return _dead(raw, err, service, dlq_clock(raw))


def _split(step_id: str, decoded: Stream[Any]) -> tuple[Stream[AnyEnvelope], Stream[Outbound]]:
    # Each item is an envelope or a dead letter (an Outbound); no wrapper per message.
    branches = op.branch(f"{step_id}_ok", decoded, lambda d: not isinstance(d, Outbound))
    return branches.trues, branches.falses


def decode_ticks(
    step_id: str,
    raw: Stream[RawMessage],
    *,
    service: str,
    dlq_clock: Callable[[RawMessage], datetime],
    derive_ids: bool = True,
    stamp_created: bool = False,
) -> tuple[Stream[TickEnvelope], Stream[Outbound]]:
    """Decode producer-form ticks; return (ticks, dead letters for market.ticks.dlq).

    ``derive_ids=False`` leaves missing tick ids for the strategy stage to
    derive when a tick causes an event (in-process only: such ticks are never
    published). ``dlq_clock`` stamps dead letters (the file position's fixed time in
    replays, wall-clock time live). ``stamp_created`` emits each tick that
    has a Kafka create time as :class:`dataflows.tick_time.Stamped` with it,
    so the signals it causes carry it on (the strategy runner).
    """

    def decode_one(msg: RawMessage) -> TickEnvelope | Stamped | Outbound:
        try:
            tick = decode_tick(msg.value, source=service, derive_id=derive_ids)
        except DecodeError as err:
            return _dead(msg, err, service, dlq_clock(msg))
        if stamp_created and msg.timestamp is not None:
            return Stamped(tick, epoch_ms(msg.timestamp))
        return tick

    return _split(step_id, op.map(f"{step_id}_decode", raw, decode_one))  # type: ignore[return-value]


def decode_events(
    step_id: str,
    raw: Stream[RawMessage],
    expected: type[AnyEnvelope],
    *,
    service: str,
    stamp_tick_created: bool = False,
) -> tuple[Stream[AnyEnvelope], Stream[Outbound]]:
    """Decode full envelopes of type ``expected``; return (events, dead letters).

    With ``stamp_tick_created`` (the per-stage flows), an event whose message
    has the ``ap-tick-created-ms`` header comes out as
    :class:`dataflows.tick_time.Stamped` with that time, so what it causes
    carries it on; a garbled header is counted in
    ``alpha_panda_bad_headers_total`` and the event goes on unstamped.
    Without it, events are always bare (headers are ignored).
    """

    def decode_one(msg: RawMessage) -> AnyEnvelope | Stamped | Outbound:
        try:
            envelope = decode_as(msg.value, msg.topic, expected)
        except DecodeError as err:
            return _dead(msg, err, service, datetime.now(UTC))
        if msg.headers is None or not stamp_tick_created:
            return envelope
        try:
            created = tick_created_ms(msg.topic, msg.headers)
        except HeaderError:
            BAD_HEADERS.labels(msg.topic, TICK_CREATED).inc()
            return envelope
        return envelope if created is None else Stamped(envelope, created)

    return _split(step_id, op.map(f"{step_id}_decode", raw, decode_one))
