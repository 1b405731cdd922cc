"""Typed errors of the Kite Connect client, and how they classify.

Kite answers ``{"status": "error", "error_type": "TokenException",
"message": "..."}``; each documented ``error_type`` has its own class here.
:data:`KITE_RULES` tells :func:`operators.failures.classify` what each is.
No message ever carries the API key, access token or API secret.
"""

from __future__ import annotations

from typing import Final

from connectors.errors import ConnectorError
from operators.failures import ErrorClass


class KiteError(ConnectorError):
    """Root of every Kite Connect error."""


class KiteApiError(KiteError):
    """Kite answered with ``status: error``; ``error_type`` and HTTP ``status_code`` say why."""

    def __init__(self, step: str, error_type: str, message: str, status_code: int) -> None:
        self.step = step
        self.error_type = error_type
        self.kite_message = message
        self.status_code = status_code
        super().__init__(f"{step}: Kite {error_type} (HTTP {status_code}): {message}")


class KiteTokenError(KiteApiError):
    """``TokenException``: the access token expired (daily, ~06:00 IST) or was revoked."""


class KitePermissionError(KiteApiError):
    """``PermissionException``: the app or user may not make this call."""


class KiteInputError(KiteApiError):
    """``InputException``: a missing or bad parameter."""


class KiteOrderError(KiteApiError):
    """``OrderException``: the order could not be placed, modified or cancelled."""


class KiteNetworkError(KiteApiError):
    """``NetworkException``: Kite could not reach the exchange (OMS)."""


class KiteDataError(KiteApiError):
    """``DataException``: Kite's own back end answered badly."""


class KiteGeneralError(KiteApiError):
    """``GeneralException`` or an undocumented ``error_type``."""


class KiteRateLimitError(KiteApiError):
    """HTTP 429; ``retry_after`` is Kite's hint in seconds, or None."""

    def __init__(self, step: str, message: str, retry_after: float | None) -> None:
        self.retry_after = retry_after
        super().__init__(step, "RateLimit", message, 429)


class KiteServerError(KiteApiError):
    """HTTP 5xx without a documented error body."""


class KiteTransportError(KiteError):
    """No HTTP answer: timeout, refused connection, DNS or TLS failure."""


class KiteResponseError(KiteError):
    """An answer that is not Kite's documented JSON shape."""


class KiteInstrumentError(KiteError):
    """An instrument token the ``instruments`` table does not hold: never traded."""


class KiteGuardError(KiteError):
    """A live-trading guard refused the order (credentials, caps, halt)."""


class KiteChecksumError(KiteError):
    """A postback whose checksum does not match: not from Kite, refused."""


ERROR_TYPES: Final[dict[str, type[KiteApiError]]] = {
    "TokenException": KiteTokenError,
    "PermissionException": KitePermissionError,
    "InputException": KiteInputError,
    "OrderException": KiteOrderError,
    "NetworkException": KiteNetworkError,
    "DataException": KiteDataError,
    "GeneralException": KiteGeneralError,
}

KITE_RULES: Final[tuple[tuple[str, ErrorClass], ...]] = (
    ("KiteTokenError", "authentication"),
    ("KitePermissionError", "authentication"),
    ("KiteRateLimitError", "rate_limit"),
    ("KiteNetworkError", "transient"),
    ("KiteDataError", "transient"),
    ("KiteServerError", "transient"),
    ("KiteTransportError", "transient"),
    ("KiteInputError", "business"),
    ("KiteOrderError", "business"),
    ("KiteGeneralError", "business"),
    ("KiteResponseError", "business"),
    ("KiteInstrumentError", "business"),
    ("KiteGuardError", "business"),
)
"""Kite errors -> :data:`operators.failures.ErrorClass` (first match wins).

An expired token is ``authentication`` (never retried; the placer halts the
broker); exchange-side network trouble and 5xx are ``transient``; 429 is
``rate_limit``; a refusal on the merits is ``business``.
"""
