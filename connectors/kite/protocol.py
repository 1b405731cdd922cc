"""Kite Connect v3 JSON shapes as typed rows: pure parsing, no I/O.

Every answer is ``{"status": "success", "data": ...}`` or ``{"status":
"error", "error_type": "...", "message": "..."}``. Kite's times
(``order_timestamp``, ``exchange_timestamp``, ``fill_timestamp``) are
``YYYY-MM-DD HH:MM:SS`` in IST without an offset; they are returned in UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Final

from connectors.kite.errors import (
    ERROR_TYPES,
    KiteGeneralError,
    KiteRateLimitError,
    KiteResponseError,
    KiteServerError,
)

IST: Final = timezone(timedelta(hours=5, minutes=30), "IST")

OPEN_STATUSES: Final = frozenset(
    {
        "OPEN",
        "PUT ORDER REQ RECEIVED",
        "VALIDATION PENDING",
        "OPEN PENDING",
        "MODIFY VALIDATION PENDING",
        "MODIFY PENDING",
        "MODIFIED",
        "TRIGGER PENDING",
        "CANCEL PENDING",
        "AMO REQ RECEIVED",
    }
)
"""Statuses of an order the exchange may still fill (or cancel)."""
TERMINAL_STATUSES: Final = frozenset({"COMPLETE", "CANCELLED", "REJECTED"})


def parse_time(value: Any) -> datetime | None:
    """Return a Kite time (IST, ``YYYY-MM-DD HH:MM:SS``, or ISO with an offset) in UTC; None if empty."""
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        msg = f"kite time must be text, got {value!r}"
        raise KiteResponseError(msg)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as err:
        msg = f"kite time {value!r} is not YYYY-MM-DD HH:MM:SS"
        raise KiteResponseError(msg) from err
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=IST)
    return moment.astimezone(timezone.utc)


def unwrap(step: str, status_code: int, body: Any, retry_after: float | None = None) -> Any:
    """Return ``data`` of a success answer, or raise the typed error of an error answer.

    Raises:
        KiteRateLimitError: HTTP 429.
        KiteApiError: a subclass per ``error_type`` (``KiteTokenError``...).
        KiteServerError: 5xx without a documented error body.
        KiteResponseError: an answer of neither shape.
    """
    if status_code == 429:  # HTTP status
        message = body.get("message", "too many requests") if isinstance(body, dict) else "too many requests"
        raise KiteRateLimitError(step, str(message), retry_after)
    if isinstance(body, dict) and body.get("status") == "success" and status_code < 400:
        return body.get("data")
    if isinstance(body, dict) and body.get("status") == "error":
        error_type = str(body.get("error_type") or "GeneralException")
        cls = ERROR_TYPES.get(error_type, KiteGeneralError)
        if status_code >= 500 and error_type not in ERROR_TYPES:
            cls = KiteServerError
        raise cls(step, error_type, str(body.get("message", "")), status_code)
    if status_code >= 500:
        raise KiteServerError(
            step, "ServerError", f"HTTP {status_code} without a Kite error body", status_code
        )
    msg = f"{step}: HTTP {status_code}: answer is not Kite's {{status, data}} JSON: {str(body)[:120]!r}"
    raise KiteResponseError(msg)


def _field(step: str, row: Any, name: str) -> Any:
    if not isinstance(row, dict) or name not in row:
        msg = f"{step}: response lacks field {name!r}"
        raise KiteResponseError(msg)
    return row[name]


def _int(row: dict[str, Any], name: str) -> int:
    value = row.get(name) or 0
    return int(value)


def _float(row: dict[str, Any], name: str) -> float:
    value = row.get(name) or 0
    return float(value)


@dataclass(frozen=True, slots=True)
class KiteOrder:
    """One order as ``/orders`` or ``/orders/:id`` shows it (quantities in shares, prices in rupees)."""

    order_id: str
    status: str
    tag: str | None
    exchange: str
    tradingsymbol: str
    instrument_token: int
    transaction_type: str
    product: str
    order_type: str
    quantity: int
    filled_quantity: int
    pending_quantity: int
    cancelled_quantity: int
    price: float
    average_price: float
    status_message: str | None
    order_timestamp: datetime | None
    exchange_timestamp: datetime | None

    @property
    def is_terminal(self) -> bool:
        """Whether the order can no longer change (complete, cancelled, rejected)."""
        return self.status in TERMINAL_STATUSES

    @property
    def is_open(self) -> bool:
        """Whether the order may still be filled or cancelled."""
        return self.status in OPEN_STATUSES


def parse_order(row: Any, step: str = "kite order") -> KiteOrder:
    """Return the :class:`KiteOrder` of one order row.

    Raises:
        KiteResponseError: a required field is missing.
    """
    order_id = str(_field(step, row, "order_id"))
    tag = row.get("tag")
    return KiteOrder(
        order_id=order_id,
        status=str(_field(step, row, "status")),
        tag=str(tag) if tag else None,
        exchange=str(row.get("exchange") or ""),
        tradingsymbol=str(row.get("tradingsymbol") or ""),
        instrument_token=_int(row, "instrument_token"),
        transaction_type=str(row.get("transaction_type") or ""),
        product=str(row.get("product") or ""),
        order_type=str(row.get("order_type") or ""),
        quantity=_int(row, "quantity"),
        filled_quantity=_int(row, "filled_quantity"),
        pending_quantity=_int(row, "pending_quantity"),
        cancelled_quantity=_int(row, "cancelled_quantity"),
        price=_float(row, "price"),
        average_price=_float(row, "average_price"),
        status_message=row.get("status_message") or None,
        order_timestamp=parse_time(row.get("order_timestamp")),
        exchange_timestamp=parse_time(row.get("exchange_timestamp")),
    )


def parse_orders(data: Any, step: str = "kite orders") -> list[KiteOrder]:
    """Return the orders of a ``/orders`` or ``/orders/:id`` (history) answer, in Kite's order."""
    if not isinstance(data, list):
        msg = f"{step}: data must be a list, got {type(data).__name__}"
        raise KiteResponseError(msg)
    return [parse_order(row, step) for row in data]


@dataclass(frozen=True, slots=True)
class KiteTrade:
    """One execution of an order (``/trades``)."""

    trade_id: str
    order_id: str
    instrument_token: int
    transaction_type: str
    quantity: int
    average_price: float
    fill_timestamp: datetime | None


def parse_trades(data: Any, step: str = "kite trades") -> list[KiteTrade]:
    """Return the trades of a ``/trades`` or ``/orders/:id/trades`` answer."""
    if not isinstance(data, list):
        msg = f"{step}: data must be a list, got {type(data).__name__}"
        raise KiteResponseError(msg)
    return [
        KiteTrade(
            trade_id=str(_field(step, row, "trade_id")),
            order_id=str(_field(step, row, "order_id")),
            instrument_token=_int(row, "instrument_token"),
            transaction_type=str(row.get("transaction_type") or ""),
            quantity=_int(row, "quantity"),
            average_price=_float(row, "average_price"),
            fill_timestamp=parse_time(row.get("fill_timestamp") or row.get("exchange_timestamp")),
        )
        for row in data
    ]


@dataclass(frozen=True, slots=True)
class KiteHolding:
    """One instrument held by the account: net position or demat holding (shares, rupees)."""

    instrument_token: int
    exchange: str
    tradingsymbol: str
    product: str
    quantity: int
    average_price: float


def parse_positions(data: Any, step: str = "kite positions") -> list[KiteHolding]:
    """Return the ``net`` positions of a ``/portfolio/positions`` answer."""
    net = _field(step, data, "net")
    if not isinstance(net, list):
        msg = f"{step}: net must be a list"
        raise KiteResponseError(msg)
    return [_holding(step, row, _int(row, "quantity")) for row in net]


def parse_holdings(data: Any, step: str = "kite holdings") -> list[KiteHolding]:
    """Return a ``/portfolio/holdings`` answer; quantity counts settled and T1 shares."""
    if not isinstance(data, list):
        msg = f"{step}: data must be a list, got {type(data).__name__}"
        raise KiteResponseError(msg)
    return [_holding(step, row, _int(row, "quantity") + _int(row, "t1_quantity")) for row in data]


def _holding(step: str, row: Any, quantity: int) -> KiteHolding:
    return KiteHolding(
        instrument_token=int(_field(step, row, "instrument_token")),
        exchange=str(row.get("exchange") or ""),
        tradingsymbol=str(row.get("tradingsymbol") or ""),
        product=str(row.get("product") or "CNC"),
        quantity=quantity,
        average_price=_float(row, "average_price"),
    )
