"""Webhook delivery for alerts: a plain JSON POST, or the Telegram Bot API form.

A URL whose path ends in ``/bot<token>/sendMessage`` and that carries a
``chat_id`` query parameter is a Telegram-compatible endpoint: it receives
``{"chat_id": ..., "text": ...}``. Any other URL receives the alert itself as
JSON. Webhook URLs are secrets (a Telegram URL holds the bot token): they are
never logged or put in an error (httpx's own request log lines that name
one are dropped); :func:`redact_webhook` keeps only the scheme, host and port.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx

log = logging.getLogger(__name__)

_TELEGRAM_PATH: Final = re.compile(r"/bot[^/]+/sendMessage$")
ATTEMPTS: Final = 2


def redact_webhook(url: str) -> str:
    """``scheme://host:port/***``: where a webhook points, without its secret path or query."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}/***"


@dataclass(frozen=True)
class WebhookRequest:
    """What one webhook receives: the URL to POST to and the JSON body."""

    url: str
    body: dict[str, Any]


def webhook_request(url: str, alert: Mapping[str, Any], text: str) -> WebhookRequest:
    """Build the POST for ``url``: Telegram's ``sendMessage`` form, or ``alert`` as it is.

    In: ``alert`` a JSON-ready mapping, ``text`` its human-readable form.
    """
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    if _TELEGRAM_PATH.search(parts.path) and "chat_id" in query:
        chat_id = query.pop("chat_id")
        target = urlunsplit(parts._replace(query=urlencode(query)))
        return WebhookRequest(target, {"chat_id": chat_id, "text": text})
    return WebhookRequest(url, dict(alert))


@dataclass(frozen=True)
class Delivery:
    """The outcome of one POST: ``target`` is the redacted URL, ``status`` the HTTP status or None."""

    target: str
    ok: bool
    status: int | None
    error: str | None = None


class _HideWebhookUrls(logging.Filter):
    """Drops httpx's own request log lines (INFO, full URL) that name one of our webhooks."""

    def __init__(self, urls: Sequence[str]) -> None:
        super().__init__()
        self._secrets = [urlsplit(url).path for url in urls if urlsplit(url).path not in ("", "/")]
        self._secrets += list(urls)

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return not any(secret in text for secret in self._secrets)


class WebhookNotifier:
    """POSTs each alert to every configured webhook; a failed one is retried once, then logged.

    Never raises: delivery problems are returned as :class:`Delivery` rows
    and logged with the redacted URL.
    """

    def __init__(self, urls: Sequence[str], *, timeout_s: float = 5.0, retry_pause_s: float = 0.5) -> None:
        self._urls = [url for url in urls if url]
        self._client = httpx.Client(timeout=timeout_s)
        self._log_filter = _HideWebhookUrls(self._urls)
        logging.getLogger("httpx").addFilter(self._log_filter)
        self._retry_pause_s = retry_pause_s

    @property
    def configured(self) -> bool:
        """Whether any webhook is configured."""
        return bool(self._urls)

    def _post(self, request: WebhookRequest) -> Delivery:
        target = redact_webhook(request.url)
        error: str | None = None
        status: int | None = None
        for attempt in range(1, ATTEMPTS + 1):
            try:
                response = self._client.post(request.url, json=request.body)
            except httpx.HTTPError as err:
                # httpx puts the URL in some messages: keep only the class name.
                status, error = None, type(err).__name__
            else:
                status = response.status_code
                if response.is_success:
                    return Delivery(target, True, status)
                error = f"HTTP {status}"
                if status < 500 and status != 429:  # a refusal on the merits: no retry
                    break
            if attempt < ATTEMPTS:
                time.sleep(self._retry_pause_s)
        log.warning("alert webhook %s failed: %s", target, error)
        return Delivery(target, False, status, error)

    def send(self, alert: Mapping[str, Any], text: str) -> list[Delivery]:
        """Deliver ``alert`` to every webhook; return one :class:`Delivery` per URL."""
        return [self._post(webhook_request(url, alert, text)) for url in self._urls]

    def close(self) -> None:
        """Close the HTTP client."""
        self._client.close()
        logging.getLogger("httpx").removeFilter(self._log_filter)
