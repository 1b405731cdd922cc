"""The root of every Alpha Panda exception, and the decode error."""

from __future__ import annotations


class AlphaPandaError(Exception):
    """Root of all errors raised by Alpha Panda code."""


class DecodeError(AlphaPandaError):
    """A message could not be turned into a typed event.

    ``reason`` names the offending field and value, e.g.
    ``last_price must be finite and > 0, got nan - at $.data.last_price``.
    """

    def __init__(self, topic: str, reason: str) -> None:
        self.topic = topic
        self.reason = reason
        super().__init__(f"cannot decode message from {topic!r}: {reason}")
