"""Kafka record headers the pipeline sets; never part of the JSON message contract.

``ap-tick-created-ms`` carries the Kafka create time of the tick behind a
message (integer epoch milliseconds as ASCII digits) across the per-stage
flows, so each can time its output from the tick. The strategy runner sets
it on each signal from its tick; every later stage copies it from the input
to the outputs that input caused.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from schemas.errors import DecodeError

TICK_CREATED: Final = "ap-tick-created-ms"
"""Header name: the Kafka create time of the causing tick, epoch ms as ASCII digits."""

Headers = tuple[tuple[str, bytes], ...]
"""Headers to produce with a message, as ``(name, value)`` pairs."""

_MAX_DIGITS: Final = 16
"""Epoch ms stays below 10**16 for the next 300,000 years; longer is garbage."""


class HeaderError(DecodeError):
    """A header the pipeline reads is present but not in its format (the message itself is fine)."""


def tick_created_headers(epoch_ms: int) -> Headers:
    """The headers of a message caused by a tick created at ``epoch_ms`` (epoch milliseconds)."""
    return ((TICK_CREATED, str(epoch_ms).encode("ascii")),)


def tick_created_ms(topic: str, headers: Sequence[tuple[str, bytes | str | None]] | None) -> int | None:
    """The ``ap-tick-created-ms`` value of ``headers`` (epoch ms), or None when absent.

    In: a message's headers as the Kafka client returns them (None or empty:
    none). The first ``ap-tick-created-ms`` header counts.

    Raises:
        HeaderError: the header is there but not 1 to 16 ASCII digits.
    """
    if not headers:
        return None
    for name, value in headers:
        if name != TICK_CREATED:
            continue
        raw = value.encode("utf-8", "replace") if isinstance(value, str) else value
        if raw is None or not 0 < len(raw) <= _MAX_DIGITS or not raw.isdigit():
            shown = raw[:24] if raw is not None else None
            msg = f"header {TICK_CREATED} must be 1 to {_MAX_DIGITS} ASCII digits (epoch ms), got {shown!r}"
            raise HeaderError(topic, msg)
        return int(raw)
    return None
