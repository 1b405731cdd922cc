"""Bytes <-> typed events: the public names of the codec, one import for every caller.

Each concern has its module: :mod:`schemas.raw` (messages before decoding),
:mod:`schemas.encoding`, :mod:`schemas.decoding` (one message, and UTC
normalisation), :mod:`schemas.tick_batch` (the hot path's batch decoder) and
:mod:`schemas.dead_letters`. JSON is read and written only there.
"""

from __future__ import annotations

from schemas.dead_letters import (
    MAX_DLQ_VALUE_BYTES,
    REPLAYABLE,
    dead_letter,
    original_message,
    original_value,
    poison_letter,
)
from schemas.decoding import (
    MAX_MESSAGE_BYTES,
    REJECT_NAIVE,
    NaiveZone,
    complete_tick,
    decode,
    decode_as,
    decode_tick,
)
from schemas.encoding import encode, encode_lines, to_builtins
from schemas.raw import RawBatch, RawMessage
from schemas.tick_batch import TickBatch, TimeCache, decode_tick_batch

__all__ = [
    "MAX_DLQ_VALUE_BYTES",
    "MAX_MESSAGE_BYTES",
    "REJECT_NAIVE",
    "REPLAYABLE",
    "NaiveZone",
    "RawBatch",
    "RawMessage",
    "TickBatch",
    "TimeCache",
    "complete_tick",
    "dead_letter",
    "decode",
    "decode_as",
    "decode_tick",
    "decode_tick_batch",
    "encode",
    "encode_lines",
    "original_message",
    "original_value",
    "poison_letter",
    "to_builtins",
]
