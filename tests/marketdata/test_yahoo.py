from datetime import UTC, datetime

import pytest

from connectors.marketdata.errors import (
    HttpStatusError,
    RateLimitedError,
    ResponseShapeError,
    SymbolNotFoundError,
)
from connectors.marketdata.instruments import stable_token
from connectors.marketdata.yahoo import fetch_yahoo_bars, parse_chart
from tests.marketdata.conftest import Answer, ScriptedHttp

DAY1, DAY2, DAY3 = 1704205800, 1704292200, 1704378600  # 2024-01-02/03/04 14:30Z


def chart(**quote_overrides: object) -> dict[str, object]:
    quote = {
        "open": [187.15, 184.22, None],
        "high": [188.44, 185.88, None],
        "low": [183.89, 183.43, None],
        "close": [185.64, 184.25, None],
        "volume": [82488700, None, None],
        **quote_overrides,
    }
    return {
        "chart": {
            "result": [
                {
                    "meta": {"currency": "USD", "symbol": "AAPL", "exchangeName": "NMS"},
                    "timestamp": [DAY1, DAY2, DAY3],
                    "indicators": {"quote": [quote], "adjclose": [{"adjclose": [1, 2, 3]}]},
                }
            ],
            "error": None,
        }
    }


NOT_FOUND = {
    "chart": {
        "result": None,
        "error": {"code": "Not Found", "description": "No data found, symbol may be delisted"},
    }
}


def test_parse_chart_skips_null_rows_and_defaults_volume() -> None:
    bars = parse_chart(chart(), symbol="AAPL")
    assert len(bars) == 2
    first, second = bars
    assert first.timestamp == datetime(2024, 1, 2, 14, 30, tzinfo=UTC)
    assert (first.open, first.high, first.low, first.close, first.volume) == (
        187.15,
        188.44,
        183.89,
        185.64,
        82488700,
    )
    assert second.volume == 0
    assert first.instrument_token == stable_token("AAPL") and first.source == "yahoo"
    assert parse_chart(chart(), symbol="AAPL", token=7)[0].instrument_token == 7


def test_fetch_sends_interval_and_range(http_server: ScriptedHttp) -> None:
    http_server.on("/v8/finance/chart/RELIANCE.NS", Answer(200, chart()))
    bars = fetch_yahoo_bars("RELIANCE.NS", interval="1d", range_="5d", base_url=http_server.base_url)
    assert [b.symbol for b in bars] == ["RELIANCE.NS"] * 2
    (seen,) = http_server.seen
    assert seen.query["interval"] == "1d" and seen.query["range"] == "5d"
    assert "mozilla" not in seen.headers["user-agent"].lower()


def test_fetch_with_periods(http_server: ScriptedHttp) -> None:
    http_server.on("/v8/finance/chart/AAPL", Answer(200, chart()))
    fetch_yahoo_bars(
        "AAPL",
        start=datetime(2024, 1, 2, tzinfo=UTC),
        end=datetime(2024, 1, 5, tzinfo=UTC),
        base_url=http_server.base_url,
    )
    (seen,) = http_server.seen
    assert (seen.query["period1"], seen.query["period2"]) == ("1704153600", "1704412800")
    assert "range" not in seen.query


def test_unknown_symbol(http_server: ScriptedHttp) -> None:
    http_server.on("/v8/finance/chart/NOPE", Answer(404, NOT_FOUND))
    with pytest.raises(SymbolNotFoundError, match="unknown symbol 'NOPE': No data found") as info:
        fetch_yahoo_bars("NOPE", base_url=http_server.base_url)
    assert info.value.symbol == "NOPE"


def test_rate_limited(http_server: ScriptedHttp) -> None:
    http_server.on("/v8/finance/chart/AAPL", Answer(429, "Too Many Requests", {"Retry-After": "30"}))
    with pytest.raises(RateLimitedError, match="HTTP 429, retry after 30 s") as info:
        fetch_yahoo_bars("AAPL", base_url=http_server.base_url)
    assert info.value.retry_after == 30.0


def test_rate_limit_retry_then_success(http_server: ScriptedHttp) -> None:
    http_server.on("/v8/finance/chart/AAPL", Answer(429, "Too Many Requests"), Answer(200, chart()))
    waits: list[float] = []
    bars = fetch_yahoo_bars("AAPL", base_url=http_server.base_url, rate_limit_retries=1, sleep=waits.append)
    assert len(bars) == 2 and waits == [1.0]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"chart": {"result": [{"timestamp": [DAY1]}], "error": None}}, "indicators"),
        (chart(close=None), "close"),
        (chart(low=[1.0]), "low"),
        ({"nothing": 1}, "chart"),
    ],
)
def test_missing_fields(http_server: ScriptedHttp, payload: object, field: str) -> None:
    http_server.on("/v8/finance/chart/AAPL", Answer(200, payload))
    with pytest.raises(ResponseShapeError, match=f"response field '[^']*{field}'") as info:
        fetch_yahoo_bars("AAPL", base_url=http_server.base_url)
    assert field in info.value.field


def test_errors_are_distinct() -> None:
    kinds = {SymbolNotFoundError, RateLimitedError, ResponseShapeError}
    assert len(kinds) == 3
    assert not any(issubclass(a, b) for a in kinds for b in kinds if a is not b)


def test_other_status_and_non_json(http_server: ScriptedHttp) -> None:
    http_server.on("/v8/finance/chart/AAPL", Answer(503, "<html>down</html>"))
    with pytest.raises(HttpStatusError, match="HTTP 503"):
        fetch_yahoo_bars("AAPL", base_url=http_server.base_url)
    http_server.on("/v8/finance/chart/MSFT", Answer(200, "<html>consent</html>"))
    with pytest.raises(ResponseShapeError, match="is not JSON"):
        fetch_yahoo_bars("MSFT", base_url=http_server.base_url)
