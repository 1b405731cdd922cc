"""The FastAPI app of ``alpha-panda serve``: the read API, ``/metrics`` and the dashboard page.

Every route, health and ``/metrics`` included, answers 401 without the token
(bearer header or login cookie). The only thing served without it is the
body of that 401: a login form when a browser asks for a page. ``POST
/login`` with the right token sets the cookie.

API (JSON): ``/api/overview`` (everything the page shows, in one body),
``/api/portfolios`` (and ``/{broker}/{strategy_id}``),
``/api/equity/{broker}/{strategy_id}``, ``/api/signals``, ``/api/rejections``,
``/api/orders``, ``/api/fills``, ``/api/dlq``, ``/api/health``. Money is in
account currency; times are ISO-8601.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.resources
from collections.abc import Awaitable, Callable
from typing import Any, Final
from urllib.parse import parse_qs

import orjson
from fastapi import FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse

from alpha_panda.dashboard import metrics
from alpha_panda.dashboard.auth import COOKIE, TokenAuth
from alpha_panda.dashboard.sources import RECENT, DashboardSources
from schemas.topics import SIGNALS_RAW, SIGNALS_REJECTED

STATIC: Final = importlib.resources.files("alpha_panda.dashboard").joinpath("static")
_ASSETS: Final = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}
_SECURITY_HEADERS: Final = {
    # Plotly adds <style> elements at run time, hence 'unsafe-inline' for styles only.
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
UNAUTHORIZED: Final = "missing or invalid dashboard token"


def _plotly_js() -> bytes:
    return importlib.resources.files("plotly").joinpath("package_data", "plotly.min.js").read_bytes()


def _asset(name: str) -> bytes:
    return STATIC.joinpath(name).read_bytes()


async def _login_token(request: Request) -> str | None:
    body = await request.body()
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            value = orjson.loads(body).get("token")
        except (orjson.JSONDecodeError, AttributeError):
            return None
        return value if isinstance(value, str) else None
    values = parse_qs(body.decode("utf-8", "replace")).get("token")
    return values[0] if values else None


def _login_page() -> tuple[bytes, str]:
    """The login form and a CSP that allows exactly its one inline script (by hash)."""
    page = _asset("login.html")
    script = page.split(b"<script>", 1)[1].split(b"</script>", 1)[0]
    digest = base64.b64encode(hashlib.sha256(script).digest()).decode()
    csp = f"default-src 'none'; script-src 'sha256-{digest}'; style-src 'unsafe-inline'; connect-src 'self'; "
    return page, csp + "frame-ancestors 'none'"


def _unauthorized(request: Request, login_page: tuple[bytes, str]) -> Response:
    headers = {"WWW-Authenticate": 'Bearer realm="alpha-panda"', **_SECURITY_HEADERS}
    if request.method == "GET" and "text/html" in request.headers.get("accept", ""):
        page, csp = login_page
        return HTMLResponse(page, status_code=401, headers={**headers, "Content-Security-Policy": csp})
    return JSONResponse({"detail": UNAUTHORIZED}, status_code=401, headers=headers)


def create_app(sources: DashboardSources, token: str) -> FastAPI:  # noqa: C901 - one small handler per route
    """Build the app over ``sources``; ``token`` is ``DASHBOARD_TOKEN`` (unwrapped)."""
    auth = TokenAuth(token)
    app = FastAPI(title="Alpha Panda", docs_url=None, redoc_url=None, openapi_url=None)
    plotly_js = _plotly_js()
    login_page = _login_page()

    @app.middleware("http")
    async def require_token(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        if request.url.path == "/login" and request.method == "POST":
            if not auth.token_ok(await _login_token(request)):
                return _unauthorized(request, login_page)
            response = Response(status_code=204, headers=_SECURITY_HEADERS)
            response.set_cookie(
                COOKIE, auth.session_cookie(), httponly=True, samesite="strict",
                secure=request.url.scheme == "https", max_age=7 * 24 * 3600,
            )  # fmt: skip
            return response
        if not auth.allowed(request.headers.get("authorization"), request.cookies.get(COOKIE)):
            return _unauthorized(request, login_page)
        response = await call_next(request)
        response.headers.update(_SECURITY_HEADERS)
        return response

    @app.get("/", response_class=HTMLResponse)
    def page() -> HTMLResponse:
        return HTMLResponse(_asset("index.html"))

    @app.get("/static/{name}")
    def asset(name: str) -> Response:
        if name == "plotly.min.js":
            return Response(plotly_js, media_type="text/javascript; charset=utf-8")
        if name not in _ASSETS:
            raise HTTPException(status_code=404, detail=f"no asset {name!r}")
        return Response(_asset(name), media_type=_ASSETS[name])

    @app.post("/logout")
    def logout() -> Response:
        response = Response(status_code=204)
        response.delete_cookie(COOKIE)
        return response

    @app.get("/api/overview")
    def overview() -> dict[str, Any]:
        return sources.overview()

    @app.get("/api/portfolios")
    def portfolios() -> dict[str, Any]:
        return sources.portfolios()

    @app.get("/api/portfolios/{broker}/{strategy_id}")
    def portfolio(broker: str, strategy_id: str) -> dict[str, Any]:
        found = sources.portfolios().get(broker, {}).get(strategy_id)
        if found is None:
            raise HTTPException(
                status_code=404, detail=f"no portfolio {broker}:portfolio:{strategy_id} in Redis"
            )
        return found

    @app.get("/api/equity/{broker}/{strategy_id}")
    def equity(broker: str, strategy_id: str, limit: int = Query(2000, ge=1, le=100_000)) -> dict[str, Any]:
        return {"broker": broker, "strategy_id": strategy_id,
                "points": sources.ledger.equity(broker, strategy_id, limit)}  # fmt: skip

    @app.get("/api/signals")
    def signals(limit: int = Query(RECENT, ge=1, le=500)) -> list[dict[str, Any]]:
        return sources.recent_messages(SIGNALS_RAW, limit)

    @app.get("/api/rejections")
    def rejections(limit: int = Query(RECENT, ge=1, le=500)) -> list[dict[str, Any]]:
        return sources.recent_messages(SIGNALS_REJECTED, limit)

    @app.get("/api/orders")
    def orders(limit: int = Query(RECENT, ge=1, le=1000)) -> list[dict[str, Any]]:
        return sources.ledger.recent_orders(limit)

    @app.get("/api/fills")
    def fills(limit: int = Query(RECENT, ge=1, le=1000)) -> list[dict[str, Any]]:
        return sources.ledger.recent_fills(limit)

    def latest_health() -> Any:
        health = sources.monitor.latest
        if health is None:
            raise HTTPException(status_code=503, detail="first health check still running")
        return health

    @app.get("/api/dlq")
    def dlq() -> dict[str, int]:
        return dict(latest_health().dlq)

    @app.get("/api/health")
    def health() -> dict[str, Any]:
        return dict(latest_health().as_json())

    @app.get("/metrics")
    def prometheus() -> Response:
        return Response(metrics.exposition(), media_type="text/plain; version=0.0.4; charset=utf-8")

    return app
