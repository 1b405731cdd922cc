"""Typed events -> bytes (UTF-8 JSON) or plain Python values; the only place JSON is written."""

from __future__ import annotations

from typing import Any, Final

import msgspec

from schemas.envelope import AnyEnvelope

_encoder: Final = msgspec.json.Encoder()


def encode(envelope: AnyEnvelope) -> bytes:
    """Return the UTF-8 JSON bytes of ``envelope``."""
    return _encoder.encode(envelope)


def encode_lines(envelopes: list[Any]) -> bytes:
    """Return newline-delimited JSON of ``envelopes``, one per line, each line ending in a newline."""
    return _encoder.encode_lines(envelopes)


def to_builtins(envelope: AnyEnvelope) -> Any:
    """Return ``envelope`` as plain JSON-compatible Python values."""
    return msgspec.to_builtins(envelope)
