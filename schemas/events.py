"""Event payloads (the ``data`` of an envelope), frozen and validated on decode.

Prices and money are JSON numbers (``float``) on the wire; operators that
keep money (fills, portfolio) convert to :class:`decimal.Decimal` inside.
Timestamps are ISO-8601; a tick's ``timestamp`` is exchange time and is the
only clock strategies and risk use.

Every event struct here and in :mod:`schemas.envelope` is ``gc=False``: an
event is an immutable tree of values that can never be part of a reference
cycle, so reference counting frees it, and keeping it out of CPython's cyclic
collector saves the collector's bookkeeping on every one of the millions a
replay makes (and the collections their allocations would trigger).
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

MAX_QUANTITY = 1_000_000_000
"""Bound on counts of shares and on instrument tokens; the ledger's columns hold it."""

PositiveInt = Annotated[int, msgspec.Meta(gt=0, le=2**63 - 1)]
Quantity = Annotated[int, msgspec.Meta(gt=0, le=MAX_QUANTITY)]
Confidence = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
Side = Literal["BUY", "SELL"]
ExecutionMode = Literal["paper", "live", "dry_run"]
ErrorType = Literal["poison", "transient", "infrastructure", "rate_limit", "business", "authentication"]

MAX_PRICE = 1e9
"""Sanity bound on prices; no listed instrument trades near it."""


def _check_price(name: str, value: float) -> None:
    if not (math.isfinite(value) and 0.0 < value <= MAX_PRICE):
        msg = f"{name} must be finite, > 0 and <= {MAX_PRICE:g}, got {value!r}"
        raise ValueError(msg)


class Ohlc(msgspec.Struct, frozen=True, gc=False):
    """Session open, high, low and close of an instrument."""

    open: float
    high: float
    low: float
    close: float


class MarketTick(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    """One market-data update of one instrument."""

    instrument_token: PositiveInt
    last_price: float
    timestamp: datetime
    volume: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)] | None = None
    symbol: str | None = None
    ohlc: Ohlc | None = None
    depth: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        """Reject non-finite, non-positive and absurd prices."""
        _check_price("last_price", self.last_price)


class TradingSignal(msgspec.Struct, frozen=True, gc=False):
    """A strategy's wish to trade, before risk checks."""

    strategy_id: str
    instrument_token: PositiveInt
    signal_type: Side
    quantity: Quantity
    price: float
    timestamp: datetime
    confidence: Confidence
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        """Reject signals with prices no tick could have had."""
        _check_price("price", self.price)


class ValidatedSignal(msgspec.Struct, frozen=True, gc=False):
    """A signal that passed every risk check."""

    original_signal: TradingSignal
    validated_quantity: Quantity
    validated_price: float
    risk_checks: dict[str, bool]
    timestamp: datetime


class RejectedSignal(msgspec.Struct, frozen=True, gc=False):
    """A signal that failed one or more risk checks; the reason names each."""

    original_signal: TradingSignal
    rejection_reason: str
    risk_checks: dict[str, bool]
    timestamp: datetime


class OrderSubmitted(msgspec.Struct, frozen=True, gc=False):
    """An order sent to (or, in dry run, withheld from) a broker."""

    order_id: str
    strategy_id: str
    instrument_token: PositiveInt
    side: Side
    quantity: Quantity
    timestamp: datetime
    broker: str
    execution_mode: ExecutionMode
    price: float
    status: str


class OrderFilled(msgspec.Struct, frozen=True, gc=False):
    """An executed order with its fill price and fees (money, account currency)."""

    order_id: str
    strategy_id: str
    instrument_token: PositiveInt
    side: Side
    quantity: Quantity
    timestamp: datetime
    broker: str
    execution_mode: ExecutionMode
    fill_price: float
    fees: float


class OrderFailed(msgspec.Struct, frozen=True, gc=False):
    """An order the broker refused or could not execute."""

    order_id: str
    strategy_id: str
    instrument_token: PositiveInt
    side: Side
    quantity: Quantity
    timestamp: datetime
    broker: str
    execution_mode: ExecutionMode
    error_message: str


class Position(msgspec.Struct, frozen=True, gc=False):
    """One instrument's holding inside a P&L snapshot."""

    quantity: int
    average_price: float
    last_price: float
    realized_pnl: float
    unrealized_pnl: float


class PnlSnapshot(msgspec.Struct, frozen=True, gc=False):
    """The whole account of one strategy at one broker, marked to market.

    ``positions`` is keyed by instrument token as a string (JSON object keys).
    """

    strategy_id: str
    broker: str
    cash: float
    positions: dict[str, Position]
    realized_pnl: float
    unrealized_pnl: float
    total_pnl: float
    fees_paid: float
    total_value: float
    timestamp: datetime


class DlqMetadata(msgspec.Struct, frozen=True, gc=False):
    """Where a dead letter came from and when it died."""

    original_topic: str
    original_partition: int | None
    original_offset: int | None
    original_timestamp: datetime | None
    dlq_timestamp: datetime
    service_name: str


class FailureInfo(msgspec.Struct, frozen=True, gc=False):
    """Why a message died."""

    error_type: ErrorType
    error_class: str
    error_message: str
    retry_count: int = 0


class OriginalMessage(msgspec.Struct, frozen=True, gc=False):
    """The message as it arrived: text value, or base64 when not UTF-8.

    ``value_length`` (bytes) and ``value_sha256`` describe the whole
    original; a value longer than the dead-letter bound keeps only a prefix
    (``truncated``), so a dead letter stays far below 1 MB.
    """

    key: str | None
    value: str
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    value_encoding: Literal["utf-8", "base64"] = "utf-8"
    truncated: bool = False
    value_length: int | None = None
    value_sha256: str | None = None


class ReplayMetadata(msgspec.Struct, frozen=True, gc=False):
    """Whether ``alpha-panda dlq replay`` may republish this record."""

    can_replay: bool
    requires_manual_review: bool


class DlqRecord(msgspec.Struct, frozen=True, gc=False):
    """A dead letter: the original message with its failure."""

    dlq_metadata: DlqMetadata
    failure_info: FailureInfo
    original_message: OriginalMessage
    replay_metadata: ReplayMetadata
