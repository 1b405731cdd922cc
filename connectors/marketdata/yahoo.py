"""Yahoo Finance chart API: daily/intraday bars over HTTP.

``GET {base}/v8/finance/chart/{symbol}?interval=1d&range=1mo`` (or
``period1``/``period2`` in Unix seconds) answers::

    {"chart": {"result": [{"meta": {...}, "timestamp": [s, ...],
                           "indicators": {"quote": [{"open": [...], "high": [...],
                                                     "low": [...], "close": [...],
                                                     "volume": [...]}]}}],
               "error": null}}

Rows whose open/high/low/close is null (halts, holidays) are skipped; a null
volume is 0. Three failures are told apart: an unknown symbol
(:class:`SymbolNotFoundError`, ``chart.error.code`` ``Not Found``), a rate
limit (:class:`RateLimitedError`, HTTP 429), and a response lacking a
documented field (:class:`ResponseShapeError`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import quote

from connectors.marketdata.bars import Bar
from connectors.marketdata.errors import (
    HistoryFormatError,
    HttpStatusError,
    ResponseShapeError,
    SymbolNotFoundError,
)
from connectors.marketdata.http_client import HTTP_NOT_FOUND, HTTP_OK, get_with_rate_limit_retry
from connectors.marketdata.instruments import stable_token
from schemas.envelope import as_utc

DEFAULT_URL: Final = "https://query1.finance.yahoo.com"
_STEP: Final = "fetch yahoo chart"
_PRICE_FIELDS: Final = ("open", "high", "low", "close")


def _chart_error(payload: Any) -> dict[str, Any] | None:
    chart = payload.get("chart") if isinstance(payload, dict) else None
    error = chart.get("error") if isinstance(chart, dict) else None
    return error if isinstance(error, dict) else None


def _require(container: Any, name: str, path: str, kind: type) -> Any:
    value = container.get(name) if isinstance(container, dict) else None
    if not isinstance(value, kind):
        detail = "is missing" if value is None else f"must be {kind.__name__}, got {value!r:.60}"
        raise ResponseShapeError(_STEP, f"{path}.{name}", detail)
    return value


def parse_chart(payload: Any, *, symbol: str, token: int | None = None) -> list[Bar]:
    """Parse a chart response into bars in time order.

    ``token``: the instrument token; default :func:`stable_token` of ``symbol``.

    Returns:
        bars with ``timestamp`` the bar start (UTC), prices in the
        listing's currency (``meta.currency``), volume in shares.

    Raises:
        SymbolNotFoundError: ``chart.error.code`` is ``Not Found``.
        ResponseShapeError: any documented field is missing or mistyped,
            or the arrays differ in length.
    """
    error = _chart_error(payload)
    if error is not None:
        if error.get("code") == "Not Found":
            raise SymbolNotFoundError(_STEP, symbol, str(error.get("description", "")))
        raise ResponseShapeError(_STEP, "chart.error", f"is {error!r:.120}")
    chart = _require(payload, "chart", "$", dict)
    results = _require(chart, "result", "chart", list)
    if not results:
        raise ResponseShapeError(_STEP, "chart.result", "is empty")
    result = results[0]
    # A range with no trading days has no timestamp array at all.
    if isinstance(result, dict) and "timestamp" not in result and "indicators" in result:
        return []
    stamps = _require(result, "timestamp", "chart.result[0]", list)
    indicators = _require(result, "indicators", "chart.result[0]", dict)
    quotes = _require(indicators, "quote", "chart.result[0].indicators", list)
    if not quotes:
        raise ResponseShapeError(_STEP, "chart.result[0].indicators.quote", "is empty")
    path = "chart.result[0].indicators.quote[0]"
    columns = {name: _require(quotes[0], name, path, list) for name in (*_PRICE_FIELDS, "volume")}
    for name, column in columns.items():
        if len(column) != len(stamps):
            detail = f"has {len(column)} values for {len(stamps)} timestamps"
            raise ResponseShapeError(_STEP, f"{path}.{name}", detail)
    token = token if token is not None else stable_token(symbol)
    bars = []
    for index, stamp in enumerate(stamps):
        prices = [columns[name][index] for name in _PRICE_FIELDS]
        if any(p is None for p in prices):
            continue
        try:
            bars.append(
                Bar(
                    instrument_token=token,
                    timestamp=datetime.fromtimestamp(stamp, tz=UTC),
                    open=float(prices[0]),
                    high=float(prices[1]),
                    low=float(prices[2]),
                    close=float(prices[3]),
                    volume=int(columns["volume"][index] or 0),
                    symbol=symbol,
                    source="yahoo",
                )
            )
        except (TypeError, ValueError, OverflowError, HistoryFormatError) as err:
            raise ResponseShapeError(_STEP, f"{path}[{index}]", str(err)) from err
    return bars


def fetch_yahoo_bars(  # one argument per query parameter
    symbol: str,
    *,
    interval: str = "1d",
    range_: str | None = "1mo",
    start: datetime | None = None,
    end: datetime | None = None,
    token: int | None = None,
    base_url: str = DEFAULT_URL,
    rate_limit_retries: int = 0,
    sleep: Callable[[float], None] = time.sleep,
    timeout_s: float = 30.0,
) -> list[Bar]:
    """Fetch ``symbol``'s bars (e.g. ``AAPL``, ``RELIANCE.NS``) from the chart API.

    ``interval``: ``1m``, ``5m``, ``1h``, ``1d``, ``1wk``...
    ``range_``: ``1d``, ``5d``, ``1mo``, ``1y``, ``max``...; ignored when
        ``start`` and ``end`` are given (sent as ``period1``/``period2``).
    ``rate_limit_retries``: waits on HTTP 429 before giving up (default 0:
        raise at once).

    Raises:
        SymbolNotFoundError: unknown symbol.
        RateLimitedError: HTTP 429 (after the allowed retries).
        ResponseShapeError: a documented field is missing.
        HttpStatusError: any other non-200 answer.
    """
    params = {"interval": interval, "includePrePost": "false", "events": "div,splits"}
    if start is not None and end is not None:
        params["period1"] = str(int(as_utc(start).timestamp()))
        params["period2"] = str(int(as_utc(end).timestamp()))
    elif range_ is not None:
        params["range"] = range_
    url = f"{base_url.rstrip('/')}/v8/finance/chart/{quote(symbol, safe='')}"
    response = get_with_rate_limit_retry(
        _STEP,
        url,
        params=params,
        timeout_s=timeout_s,
        rate_limit_retries=rate_limit_retries,
        sleep=sleep,
    )
    if response.status not in (HTTP_OK, HTTP_NOT_FOUND):
        raise HttpStatusError(_STEP, response.status, response.text())
    try:
        payload = response.json(_STEP)
    except ResponseShapeError:
        if response.status == HTTP_OK:
            raise
        payload = None
    # A 404 is an unknown symbol only when Yahoo says so in chart.error.
    if response.status == HTTP_NOT_FOUND and _chart_error(payload) is None:
        raise HttpStatusError(_STEP, response.status, response.text())
    return parse_chart(payload, symbol=symbol, token=token)
