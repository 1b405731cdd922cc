"""A blocking JSON-over-HTTP GET on ``httpx`` (as every REST connector uses), with 429 retry.

Only ``http``/``https`` URLs. Non-2xx answers come back as responses (not
exceptions) so each provider maps its own statuses to typed errors; only a
429 is handled here, by waiting ``Retry-After`` seconds (or an exponential
fallback, :func:`operators.failures.backoff_ceiling`) up to
``rate_limit_retries`` times. Redirects are followed. Request headers may hold
credentials: they are never logged.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import httpx

from connectors.marketdata.errors import (
    HttpTransportError,
    RateLimitedError,
    ResponseShapeError,
)
from operators.failures import backoff_ceiling

HTTP_OK: Final = 200
HTTP_NOT_FOUND: Final = 404
HTTP_TOO_MANY_REQUESTS: Final = 429
USER_AGENT: Final = "alpha-panda/0.1 (+market data backfill)"
_LOG = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """Status, lower-cased headers and raw body of one HTTP answer."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self, step: str) -> Any:
        """Return the body as JSON.

        Raises:
            ResponseShapeError: the body is not JSON.
        """
        try:
            return json.loads(self.body)
        except ValueError as err:
            detail = f"is not JSON (HTTP {self.status}, body {self.body[:80]!r})"
            raise ResponseShapeError(step, "<body>", detail) from err

    def text(self) -> str:
        """Return the body decoded as UTF-8 (invalid bytes replaced)."""
        return self.body.decode("utf-8", "replace")


def retry_after_seconds(value: str | None) -> float | None:
    """Parse a ``Retry-After`` header given in seconds; None if absent or a date."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return max(0.0, seconds)


def http_get(
    url: str,
    *,
    params: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    timeout_s: float = 30.0,
) -> HttpResponse:
    """GET ``url`` with the query ``params``; return the answer whatever its status.

    Raises:
        HttpTransportError: no HTTP answer (connection, DNS, TLS, timeout).
    """
    scheme = urlsplit(url).scheme
    if scheme not in ("http", "https"):
        msg = f"http get: only http(s) URLs are fetched, got scheme {scheme!r} in {url!r}"
        raise HttpTransportError(msg)
    try:
        answer = httpx.get(
            url,
            params=params,
            headers={"User-Agent": USER_AGENT, "Accept": "application/json", **(headers or {})},
            timeout=timeout_s,
            follow_redirects=True,
        )
    except (httpx.HTTPError, httpx.InvalidURL) as err:
        msg = f"http get {url}: no answer ({type(err).__name__}: {err})"
        raise HttpTransportError(msg) from err
    return HttpResponse(answer.status_code, {k.lower(): v for k, v in answer.headers.items()}, answer.content)


def get_with_rate_limit_retry(
    step: str,
    url: str,
    *,
    params: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    timeout_s: float = 30.0,
    rate_limit_retries: int = 5,
    sleep: Callable[[float], None] = time.sleep,
    fallback_delay_s: float = 1.0,
) -> HttpResponse:
    """GET like :func:`http_get`, waiting and retrying while the answer is 429.

    Waits ``Retry-After`` seconds when given, else ``fallback_delay_s * 2**n``.

    Raises:
        RateLimitedError: still 429 after ``rate_limit_retries`` retries.
    """
    attempt = 0
    while True:
        response = http_get(url, params=params, headers=headers, timeout_s=timeout_s)
        if response.status != HTTP_TOO_MANY_REQUESTS:
            return response
        hint = retry_after_seconds(response.headers.get("retry-after"))
        if attempt >= rate_limit_retries:
            raise RateLimitedError(step, hint)
        delay = hint if hint is not None else backoff_ceiling(attempt + 1, fallback_delay_s, math.inf)
        _LOG.warning("%s: rate limited (HTTP 429); retrying in %.2f s", step, delay)
        sleep(delay)
        attempt += 1
