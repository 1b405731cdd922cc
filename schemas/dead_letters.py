"""Dead letters: a failed message kept as it arrived, with why it failed and whether to replay it."""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime
from typing import Any, Final

from schemas.envelope import SCHEMA_VERSION, DlqEnvelope, as_utc, event_id
from schemas.events import DlqMetadata, DlqRecord, ErrorType, FailureInfo, OriginalMessage, ReplayMetadata
from schemas.raw import RawMessage
from schemas.topics import BrokerName, topic_broker

MAX_DLQ_VALUE_BYTES: Final = 64 * 1024
"""A dead letter keeps at most this much of the original value (plus its length and SHA-256)."""


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
