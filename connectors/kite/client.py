"""A thin blocking client of the Kite Connect v3 REST API on ``httpx``.

Requests are form-encoded with the headers ``X-Kite-Version: 3`` and
``Authorization: token <api_key>:<access_token>``; answers are unwrapped by
:func:`connectors.kite.protocol.unwrap` into data or a typed error. Order
placement, modification and cancellation pass the :class:`RateLimiter`.
Credentials are ``SecretStr`` and appear in no log line or error message.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from typing import Any, Final

import httpx
from pydantic import SecretStr

from connectors.kite.errors import KiteResponseError, KiteTransportError
from connectors.kite.protocol import (
    KiteHolding,
    KiteOrder,
    KiteTrade,
    parse_holdings,
    parse_orders,
    parse_positions,
    parse_trades,
    unwrap,
)
from connectors.kite.ratelimit import RateLimiter

log = logging.getLogger(__name__)

KITE_API_URL: Final = "https://api.kite.trade"
KITE_LOGIN_URL: Final = "https://kite.zerodha.com/connect/login"
VARIETY: Final = "regular"


def login_url(api_key: SecretStr, base: str = KITE_LOGIN_URL) -> str:
    """The page where the user logs in; Kite then redirects with ``request_token``."""
    return f"{base}?v=3&api_key={api_key.get_secret_value()}"


def session_checksum(api_key: SecretStr, request_token: str, api_secret: SecretStr) -> str:
    """``sha256(api_key + request_token + api_secret)`` in hex, as ``/session/token`` wants."""
    text = api_key.get_secret_value() + request_token + api_secret.get_secret_value()
    return hashlib.sha256(text.encode()).hexdigest()


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


class KiteClient:
    """Kite Connect v3 over HTTP. One instance per process; thread-safe like ``httpx.Client``."""

    def __init__(
        self,
        api_key: SecretStr,
        access_token: SecretStr,
        *,
        base_url: str = KITE_API_URL,
        timeout_s: float = 10.0,
        limiter: RateLimiter | None = None,
        read_limiter: RateLimiter | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._api_key = api_key
        self._access_token = access_token
        self.base_url = base_url.rstrip("/")
        self._limiter = limiter or RateLimiter(8)
        self._read_limiter = read_limiter or RateLimiter(8)
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout_s, transport=transport)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> KiteClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _headers(self, *, authorised: bool = True) -> dict[str, str]:
        headers = {"X-Kite-Version": "3", "User-Agent": "alpha-panda/0.1"}
        if authorised:
            key, token = self._api_key.get_secret_value(), self._access_token.get_secret_value()
            headers["Authorization"] = f"token {key}:{token}"
        return headers

    def _call(
        self,
        method: str,
        path: str,
        step: str,
        *,
        form: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        authorised: bool = True,
    ) -> Any:
        if method == "GET":
            self._read_limiter.acquire()
        try:
            response = self._http.request(
                method,
                path,
                data={k: str(v) for k, v in (form or {}).items() if v is not None} or None,
                params=params,
                headers=self._headers(authorised=authorised),
            )
        except httpx.TimeoutException as err:
            msg = f"{step}: no answer from {self.base_url} in time ({type(err).__name__})"
            raise KiteTransportError(msg) from err
        except httpx.HTTPError as err:
            msg = f"{step}: no answer from {self.base_url} ({type(err).__name__})"
            raise KiteTransportError(msg) from err
        try:
            body = response.json()
        except ValueError:
            body = None
        if body is None and response.status_code < 500 and response.status_code != 429:
            msg = f"{step}: HTTP {response.status_code}: answer is not JSON"
            raise KiteResponseError(msg)
        return unwrap(step, response.status_code, body, _retry_after(response))

    # --- orders ---------------------------------------------------------------------

    def place_order(self, **fields: Any) -> str:
        """Place a regular order; return Kite's ``order_id``.

        ``fields``: ``exchange``, ``tradingsymbol``, ``transaction_type``
        (BUY/SELL), ``quantity``, ``product`` (MIS/CNC), ``order_type``
        (MARKET/LIMIT), ``price`` for LIMIT, ``validity`` (DAY), ``tag``.
        """
        self._limiter.acquire()
        data = self._call("POST", f"/orders/{VARIETY}", "kite place_order", form=fields)
        if not isinstance(data, dict) or "order_id" not in data:
            msg = "kite place_order: success answer lacks data.order_id"
            raise KiteResponseError(msg)
        return str(data["order_id"])

    def modify_order(self, order_id: str, **fields: Any) -> str:
        """Modify an open regular order (``quantity``, ``price``, ``order_type``...); return its id."""
        self._limiter.acquire()
        data = self._call("PUT", f"/orders/{VARIETY}/{order_id}", "kite modify_order", form=fields)
        return str(data.get("order_id", order_id)) if isinstance(data, dict) else order_id

    def cancel_order(self, order_id: str) -> str:
        """Cancel an open regular order; return its id."""
        self._limiter.acquire()
        data = self._call("DELETE", f"/orders/{VARIETY}/{order_id}", "kite cancel_order")
        return str(data.get("order_id", order_id)) if isinstance(data, dict) else order_id

    def orders(self) -> list[KiteOrder]:
        """The day's order book (every order of the account, latest state of each)."""
        return parse_orders(self._call("GET", "/orders", "kite orders"), "kite orders")

    def order_history(self, order_id: str) -> list[KiteOrder]:
        """Every state an order went through, oldest first."""
        return parse_orders(
            self._call("GET", f"/orders/{order_id}", "kite order_history"), "kite order_history"
        )

    def trades(self) -> list[KiteTrade]:
        """The day's executions."""
        return parse_trades(self._call("GET", "/trades", "kite trades"))

    def order_trades(self, order_id: str) -> list[KiteTrade]:
        """The executions of one order."""
        return parse_trades(self._call("GET", f"/orders/{order_id}/trades", "kite order_trades"))

    # --- portfolio ------------------------------------------------------------------

    def positions(self) -> list[KiteHolding]:
        """Net positions (today's trades and carried F&O)."""
        return parse_positions(self._call("GET", "/portfolio/positions", "kite positions"))

    def holdings(self) -> list[KiteHolding]:
        """Demat holdings (settled and T1)."""
        return parse_holdings(self._call("GET", "/portfolio/holdings", "kite holdings"))

    # --- session --------------------------------------------------------------------

    def generate_session(self, request_token: str, api_secret: SecretStr) -> dict[str, Any]:
        """Exchange a login's ``request_token`` for the day's session (``access_token``, ``user_id``...).

        Raises:
            KiteTokenError: the request token is invalid or used.
        """
        form = {
            "api_key": self._api_key.get_secret_value(),
            "request_token": request_token,
            "checksum": session_checksum(self._api_key, request_token, api_secret),
        }
        data = self._call("POST", "/session/token", "kite session", form=form, authorised=False)
        if not isinstance(data, dict) or not data.get("access_token"):
            msg = "kite session: success answer lacks data.access_token"
            raise KiteResponseError(msg)
        return data
