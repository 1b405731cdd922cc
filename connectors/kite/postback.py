"""Kite's order postbacks: an HTTP endpoint that accepts only checksummed updates.

Kite POSTs the order as JSON with ``checksum = sha256(order_id +
order_timestamp + api_secret)`` (hex). A postback whose checksum does not
match is answered 403 and dropped; a good one is parsed and handed to
``on_order``. The API secret never appears in an answer or a log line.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final

from pydantic import SecretStr

from connectors.kite.errors import KiteChecksumError, KiteResponseError
from connectors.kite.protocol import KiteOrder, parse_order

log = logging.getLogger(__name__)

MAX_BODY: Final = 64 * 1024


def postback_checksum(order_id: str, order_timestamp: str, api_secret: SecretStr) -> str:
    """``sha256(order_id + order_timestamp + api_secret)`` in hex."""
    return hashlib.sha256((order_id + order_timestamp + api_secret.get_secret_value()).encode()).hexdigest()


def verify_postback(body: bytes, api_secret: SecretStr) -> KiteOrder:
    """The order of a postback body, once its checksum is verified.

    Raises:
        KiteChecksumError: no checksum, or one that does not match.
        KiteResponseError: the body is not a JSON order.
    """
    try:
        payload: Any = json.loads(body)
    except ValueError as err:
        msg = "kite postback: body is not JSON"
        raise KiteResponseError(msg) from err
    if not isinstance(payload, dict):
        msg = "kite postback: body is not a JSON object"
        raise KiteResponseError(msg)
    given = str(payload.get("checksum") or "")
    expected = postback_checksum(
        str(payload.get("order_id", "")), str(payload.get("order_timestamp", "")), api_secret
    )
    if not given or not hmac.compare_digest(given.lower(), expected):
        msg = f"kite postback: checksum mismatch for order {str(payload.get('order_id', ''))[:40]!r}; refused"
        raise KiteChecksumError(msg)
    return parse_order(payload, "kite postback")


class PostbackServer:
    """A threaded HTTP server on ``host:port`` (0 = any free port) feeding ``on_order``."""

    def __init__(
        self,
        api_secret: SecretStr,
        on_order: Callable[[KiteOrder], None],
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.refused = 0
        self.on_order = on_order
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # http.server's name
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:
                    self._answer(413, {"status": "error", "message": "postback too large"})
                    return
                body = self.rfile.read(length)
                try:
                    order = verify_postback(body, api_secret)
                except KiteChecksumError as err:
                    server.refused += 1
                    log.warning("%s", err)
                    self._answer(403, {"status": "error", "message": "checksum mismatch"})
                    return
                except KiteResponseError as err:
                    server.refused += 1
                    self._answer(400, {"status": "error", "message": str(err)})
                    return
                server.on_order(order)
                self._answer(200, {"status": "success"})

            def _answer(self, status: int, body: dict[str, str]) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, format: str, *args: object) -> None:  # http.server's name
                return

        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="kite-postbacks", daemon=True)

    @property
    def url(self) -> str:
        """Where Kite should POST (``http://host:port/``)."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}/"

    def start(self) -> PostbackServer:
        """Serve in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._httpd.shutdown()
        self._httpd.server_close()
