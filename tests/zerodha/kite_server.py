"""A local Kite Connect v3 server: a real HTTP server on loopback with an order book.

It speaks the documented shapes: form-encoded requests, ``X-Kite-Version:
3`` and ``Authorization: token <api_key>:<access_token>``; answers
``{"status": "success", "data": ...}`` or ``{"status": "error",
"error_type": ..., "message": ...}``. Tests drive the exchange side
(:meth:`FakeKite.fill`, :meth:`FakeKite.reject`), expire the token,
script failures and delays, and read every request it saw.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

API_KEY = "fake-api-key"
ACCESS_TOKEN = "fake-access-token-0000"
API_SECRET = "fake-api-secret-9999"
REQUEST_TOKEN = "fake-request-token"
NEW_ACCESS_TOKEN = "fake-access-token-1111"


@dataclass
class Request:
    method: str
    path: str
    form: dict[str, str]
    headers: dict[str, str]


@dataclass
class Scripted:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class FakeKite:
    base_url: str = ""
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    history: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    trades: list[dict[str, Any]] = field(default_factory=list)
    positions: list[dict[str, Any]] = field(default_factory=list)
    holdings: list[dict[str, Any]] = field(default_factory=list)
    tokens: set[str] = field(default_factory=lambda: {ACCESS_TOKEN})
    requests: list[Request] = field(default_factory=list)
    scripted: dict[str, deque[Scripted]] = field(default_factory=dict)
    delays: dict[str, deque[float]] = field(default_factory=dict)
    pre_delays: dict[str, deque[float]] = field(default_factory=dict)
    max_orders_per_s: int = 10
    order_starts: deque[float] = field(default_factory=deque)
    rate_limited: int = 0
    lock: threading.RLock = field(default_factory=threading.RLock)
    ids: Iterator[int] = field(default_factory=lambda: itertools.count(250_000_000_000_001))
    clock: str = "2024-01-02 09:15:00"

    # --- test controls ------------------------------------------------------------

    def script(self, route: str, *answers: Scripted) -> None:
        """Answer the next requests to ``route`` (``"POST /orders/regular"``) with these."""
        self.scripted.setdefault(route, deque()).extend(answers)

    def slow_oms(self, route: str, seconds: float) -> None:
        """The next request to ``route`` takes effect (and is answered) only after ``seconds``."""
        self.pre_delays.setdefault(route, deque()).append(seconds)

    def delay(self, route: str, seconds: float) -> None:
        """Answer the next request to ``route`` only after ``seconds`` (its effect happens at once)."""
        self.delays.setdefault(route, deque()).append(seconds)

    def expire_token(self) -> None:
        self.tokens.clear()

    def orders_tagged(self, tag: str) -> list[dict[str, Any]]:
        return [o for o in self.orders.values() if o.get("tag") == tag]

    def placements(self) -> list[Request]:
        return [r for r in self.requests if r.method == "POST" and r.path == "/orders/regular"]

    def _state(self, order_id: str, **changes: Any) -> dict[str, Any]:
        order = {**self.orders[order_id], **changes}
        order["pending_quantity"] = order["quantity"] - order["filled_quantity"] - order["cancelled_quantity"]
        self.orders[order_id] = order
        self.history[order_id].append(dict(order))
        return order

    def fill(
        self, order_id: str, quantity: int, price: float, at: str = "2024-01-02 09:15:05"
    ) -> dict[str, Any]:
        """The exchange fills ``quantity`` more at ``price``; COMPLETE when all is filled."""
        with self.lock:
            order = self.orders[order_id]
            done = order["filled_quantity"]
            average = (order["average_price"] * done + price * quantity) / (done + quantity)
            filled = done + quantity
            status = "COMPLETE" if filled == order["quantity"] else "OPEN"
            trade_id = str(next(self.ids))
            self.trades.append(
                {
                    "trade_id": trade_id,
                    "order_id": order_id,
                    "exchange": order["exchange"],
                    "tradingsymbol": order["tradingsymbol"],
                    "instrument_token": order["instrument_token"],
                    "product": order["product"],
                    "average_price": price,
                    "quantity": quantity,
                    "transaction_type": order["transaction_type"],
                    "fill_timestamp": at,
                    "exchange_timestamp": at,
                }
            )
            return self._state(
                order_id,
                filled_quantity=filled,
                average_price=round(average, 4),
                status=status,
                exchange_timestamp=at,
            )

    def reject(self, order_id: str, message: str) -> dict[str, Any]:
        with self.lock:
            return self._state(order_id, status="REJECTED", status_message=message)

    # --- the API ----------------------------------------------------------------------

    def _authorised(self, headers: dict[str, str]) -> bool:
        value = headers.get("authorization", "")
        if not value.startswith("token ") or ":" not in value:
            return False
        key, token = value[len("token ") :].split(":", 1)
        return key == API_KEY and token in self.tokens

    def handle(self, method: str, path: str, form: dict[str, str], headers: dict[str, str]) -> Scripted:
        with self.lock:
            self.requests.append(Request(method, path, form, headers))
            route = f"{method} {path}"
            queue = self.scripted.get(route)
            if queue:
                return queue.popleft()
            if headers.get("x-kite-version") != "3":
                return _error(400, "InputException", "X-Kite-Version header missing")
            if path == "/session/token" and method == "POST":
                return self._session(form)
            if not self._authorised(headers):
                return _error(403, "TokenException", "Incorrect `api_key` or `access_token`.")
            return self._route(method, path, form)

    def _session(self, form: dict[str, str]) -> Scripted:
        want = hashlib.sha256((API_KEY + REQUEST_TOKEN + API_SECRET).encode()).hexdigest()
        if form.get("api_key") != API_KEY or form.get("request_token") != REQUEST_TOKEN:
            return _error(403, "TokenException", "Token is invalid or has expired.")
        if form.get("checksum") != want:
            return _error(403, "TokenException", "Invalid checksum")
        self.tokens.add(NEW_ACCESS_TOKEN)
        return _ok(
            {
                "user_id": "AB1234",
                "user_name": "Test User",
                "access_token": NEW_ACCESS_TOKEN,
                "public_token": "fake-public",
                "login_time": self.clock,
                "api_key": API_KEY,
            }
        )

    def _route(self, method: str, path: str, form: dict[str, str]) -> Scripted:
        parts = path.strip("/").split("/")
        if method == "POST" and parts == ["orders", "regular"]:
            return self._place(form)
        if method in ("PUT", "DELETE") and parts[:2] == ["orders", "regular"] and len(parts) == 3:
            return self._change(method, parts[2], form)
        if method == "GET" and parts == ["orders"]:
            return _ok(list(self.orders.values()))
        if method == "GET" and parts[0] == "orders" and len(parts) == 2:
            if parts[1] not in self.history:
                return _error(400, "InputException", "Couldn't find that `order_id`.")
            return _ok(self.history[parts[1]])
        if method == "GET" and parts[0] == "orders" and len(parts) == 3 and parts[2] == "trades":
            return _ok([t for t in self.trades if t["order_id"] == parts[1]])
        if method == "GET" and parts == ["trades"]:
            return _ok(self.trades)
        if method == "GET" and parts == ["portfolio", "positions"]:
            return _ok({"net": self.positions, "day": self.positions})
        if method == "GET" and parts == ["portfolio", "holdings"]:
            return _ok(self.holdings)
        return _error(404, "GeneralException", f"Route not found: {method} {path}")

    def _place(self, form: dict[str, str]) -> Scripted:
        now = time.monotonic()
        while self.order_starts and now - self.order_starts[0] >= 1.0:
            self.order_starts.popleft()
        if len(self.order_starts) >= self.max_orders_per_s:
            self.rate_limited += 1
            return Scripted(
                429,
                {"status": "error", "error_type": "NetworkException", "message": "Too many requests"},
                {"Retry-After": "0"},
            )
        self.order_starts.append(now)
        for name in ("exchange", "tradingsymbol", "transaction_type", "quantity", "product", "order_type"):
            if not form.get(name):
                return _error(400, "InputException", f"Missing `{name}`.")
        if form["order_type"] == "LIMIT" and not form.get("price"):
            return _error(400, "InputException", "Missing `price` for LIMIT order.")
        if len(form.get("tag", "")) > 20:
            return _error(400, "InputException", "Tag length must be <= 20 characters.")
        order_id = str(next(self.ids))
        order = {
            "order_id": order_id,
            "exchange_order_id": None,
            "parent_order_id": None,
            "status": "OPEN",
            "status_message": None,
            "order_timestamp": self.clock,
            "exchange_timestamp": None,
            "variety": "regular",
            "exchange": form["exchange"],
            "tradingsymbol": form["tradingsymbol"],
            "instrument_token": int(form.get("instrument_token") or 0),
            "order_type": form["order_type"],
            "transaction_type": form["transaction_type"],
            "validity": form.get("validity", "DAY"),
            "product": form["product"],
            "quantity": int(form["quantity"]),
            "disclosed_quantity": 0,
            "price": float(form.get("price") or 0),
            "trigger_price": 0,
            "average_price": 0.0,
            "filled_quantity": 0,
            "pending_quantity": int(form["quantity"]),
            "cancelled_quantity": 0,
            "tag": form.get("tag"),
            "tags": [form["tag"]] if form.get("tag") else [],
        }
        self.orders[order_id] = order
        self.history[order_id] = [dict(order)]
        return _ok({"order_id": order_id})

    def _change(self, method: str, order_id: str, form: dict[str, str]) -> Scripted:
        order = self.orders.get(order_id)
        if order is None:
            return _error(400, "InputException", "Couldn't find that `order_id`.")
        if order["status"] in ("COMPLETE", "CANCELLED", "REJECTED"):
            return _error(
                400, "OrderException", f"Order cannot be modified or cancelled as it is {order['status']}."
            )
        if method == "DELETE":
            pending = order["quantity"] - order["filled_quantity"]
            self._state(order_id, status="CANCELLED", cancelled_quantity=pending)
        else:
            changes: dict[str, Any] = {}
            if form.get("quantity"):
                changes["quantity"] = int(form["quantity"])
            if form.get("price"):
                changes["price"] = float(form["price"])
            if form.get("order_type"):
                changes["order_type"] = form["order_type"]
            self._state(order_id, **changes)
        return _ok({"order_id": order_id})


def _ok(data: Any) -> Scripted:
    return Scripted(200, {"status": "success", "data": data})


def _error(status: int, error_type: str, message: str) -> Scripted:
    return Scripted(status, {"status": "error", "error_type": error_type, "message": message, "data": None})


@contextmanager
def serve_kite() -> Iterator[FakeKite]:
    kite = FakeKite()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length).decode() if length else ""
            form = {k: v[-1] for k, v in parse_qs(raw).items()}
            headers = {k.lower(): v for k, v in self.headers.items()}
            route = f"{self.command} {parts.path}"
            with kite.lock:
                slow = kite.pre_delays.get(route)
                before = slow.popleft() if slow else 0.0
            if before:
                time.sleep(before)
            answer = kite.handle(self.command, parts.path, form, headers)
            with kite.lock:
                pending = kite.delays.get(route)
                delay = pending.popleft() if pending else 0.0
            if delay:
                time.sleep(delay)
            body = answer.body if isinstance(answer.body, bytes) else json.dumps(answer.body).encode()
            try:
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass

        do_GET = do_POST = do_PUT = do_DELETE = _serve

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    kite.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield kite
    finally:
        server.shutdown()
        server.server_close()
