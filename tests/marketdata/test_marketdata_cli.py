"""`alpha-panda backfill` and `alpha-panda instruments`, against local HTTP servers and real Postgres.

Each test gets a database of its own on the session's server. `alpha-panda
feed` needs Kafka too: see tests/integration/test_feed_parity.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from typer.testing import CliRunner

from alpha_panda.cli import app
from connectors.marketdata.errors import InstrumentError
from connectors.marketdata.instruments import (
    KITE_COLUMNS,
    InstrumentResolver,
    instrument_names,
    parse_kite_instruments,
    resolve_instruments,
    stable_token,
)
from dataflows.settings import get_settings
from tests.marketdata.conftest import Answer, ScriptedHttp
from tests.marketdata.test_yahoo import DAY1, NOT_FOUND, chart

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:XDG_RUNTIME_DIR is not set"),
]

KITE_CSV = (
    ",".join(KITE_COLUMNS)
    + """
408065,1594,INFY,"INFOSYS",1500.25,,0,0.05,1,EQ,NSE,NSE
2953217,11536,TCS,"TATA CONSULTANCY SERV",3800,,0,0.05,1,EQ,NSE,NSE
12345602,48225,NIFTY24JUN22500CE,"NIFTY",150.5,2024-06-27,22500,0.05,25,CE,NFO-OPT,NFO
"""
)


@pytest.fixture
def database(postgres_url: str) -> Iterator[str]:
    name = f"md_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(urlsplit(postgres_url)._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def cli(database: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[CliRunner]:
    """A runner whose settings point at the test's database and an empty DATA_DIR."""
    monkeypatch.setenv("POSTGRES_URL", database)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "no-stack"))
    for name in ("ALPACA_API_KEY", "ALPACA_SECRET_KEY", "KITE_API_KEY", "KITE_ACCESS_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


def _rows(url: str, sql: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()


def test_backfill_yahoo_loads_good_symbols_reports_bad_ones_and_is_idempotent(
    cli: CliRunner, database: str, http_server: ScriptedHttp, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("YAHOO_URL", http_server.base_url)
    get_settings.cache_clear()
    http_server.on("/v8/finance/chart/AAPL", Answer(200, chart()))
    http_server.on("/v8/finance/chart/MSFT", Answer(200, chart()))
    http_server.on("/v8/finance/chart/NOPE", Answer(404, NOT_FOUND))
    args = ["backfill", "--source", "yahoo", "--symbols", "AAPL,nope,MSFT", "--start", "2024-01-01"]
    args += ["--end", "2024-02-01", "--interval", "1d", "--quiet"]

    for _ in range(2):
        result = cli.invoke(app, args)
        assert result.exit_code == 1, result.output  # one symbol failed; the others loaded
        assert "unknown symbol 'NOPE'" in result.output
        assert "2 of 3 symbols loaded, 4 bars upserted; 1 failed" in result.output
        assert str(stable_token("AAPL")) in result.output

    stored = _rows(database, "SELECT instrument_token, symbol, close, source FROM market_data")
    assert len(stored) == 4, "loading twice leaves one row per bar"
    assert {(token, symbol) for token, symbol, _c, _s in stored} == {
        (stable_token("AAPL"), "AAPL"),
        (stable_token("MSFT"), "MSFT"),
    }
    seen = next(s for s in http_server.seen if s.path.endswith("/AAPL"))
    assert seen.query["interval"] == "1d"
    assert int(seen.query["period1"]) == int(datetime(2024, 1, 1, tzinfo=UTC).timestamp())
    first = _rows(database, "SELECT min(timestamp) FROM market_data")[0][0]
    assert first == datetime.fromtimestamp(DAY1, tz=UTC)


def test_backfill_alpaca_needs_credentials_and_then_loads(
    cli: CliRunner, database: str, http_server: ScriptedHttp, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = ["backfill", "--source", "alpaca", "--symbols", "AAPL", "--start", "2024-01-01"]
    args += ["--end", "2024-02-01", "--interval", "1d", "--quiet"]
    result = cli.invoke(app, args)
    assert result.exit_code == 2
    assert "needs ALPACA_API_KEY and ALPACA_SECRET_KEY" in result.output

    monkeypatch.setenv("ALPACA_API_KEY", "AKTEST")
    monkeypatch.setenv("ALPACA_SECRET_KEY", "alpaca-SECRET-789")
    monkeypatch.setenv("ALPACA_DATA_URL", http_server.base_url)
    get_settings.cache_clear()
    bar = {"t": "2024-01-02T05:00:00Z", "o": 184.0, "h": 186.0, "l": 183.0, "c": 185.0, "v": 2000}
    http_server.on("/v2/stocks/bars", Answer(200, {"bars": {"AAPL": [bar]}, "next_page_token": None}))
    result = cli.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "alpaca-SECRET-789" not in result.output
    assert http_server.seen[-1].query["timeframe"] == "1Day"
    assert http_server.seen[-1].headers["apca-api-secret-key"] == "alpaca-SECRET-789"
    stored = _rows(database, "SELECT instrument_token, close FROM market_data")
    assert stored == [(stable_token("AAPL"), 185.0)]


def test_backfill_rejects_bad_options(cli: CliRunner) -> None:
    base = ["backfill", "--symbols", "AAPL", "--start", "2024-01-01", "--end", "2024-02-01"]
    result = cli.invoke(app, [*base, "--source", "bloomberg"])
    assert result.exit_code == 2 and "--source must be alpaca or yahoo" in result.output
    backwards = ["backfill", "--source", "yahoo", "--symbols", "A", "--start", "2024-02-01"]
    result = cli.invoke(app, [*backwards, "--end", "2024-01-01"])
    assert result.exit_code == 2 and "must be after --start" in result.output
    result = cli.invoke(app, [*base[:4], "soon", "--end", "2024-02-01", "--source", "yahoo"])
    assert result.exit_code == 2 and "--start must be a date" in result.output


def test_instruments_load_then_resolve(cli: CliRunner, database: str, tmp_path: Path) -> None:
    csv_file = tmp_path / "instruments.csv"
    csv_file.write_text(KITE_CSV)
    for _ in range(2):
        result = cli.invoke(app, ["instruments", "load", "--file", str(csv_file)])
        assert result.exit_code == 0, result.output
        assert "3 instruments loaded" in result.output
    assert _rows(database, "SELECT count(*) FROM instruments") == [(3,)]

    result = cli.invoke(app, ["instruments", "resolve", "NSE:INFY", "nse:tcs"])
    assert result.exit_code == 0, result.output
    assert "408065" in result.output and "2953217" in result.output

    result = cli.invoke(app, ["instruments", "resolve", "NSE:INFY", "NSE:NOPE", "INFY"])
    assert result.exit_code == 1
    assert "408065" in result.output
    assert "no instrument 'NSE:NOPE'" in result.output
    assert "'INFY' is not EXCHANGE:SYMBOL" in result.output


def test_instruments_load_without_file_needs_kite_credentials(cli: CliRunner) -> None:
    result = cli.invoke(app, ["instruments", "load"])
    assert result.exit_code == 2
    assert "KITE_API_KEY and KITE_ACCESS_TOKEN" in result.output


def test_commands_name_the_missing_server(cli: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POSTGRES_URL")
    get_settings.cache_clear()
    result = cli.invoke(app, ["instruments", "resolve", "NSE:INFY"])
    assert result.exit_code == 2
    assert "set POSTGRES_URL or run `alpha-panda up`" in result.output


def test_resolve_instruments_replaces_names_in_strategy_rows() -> None:
    resolver = InstrumentResolver(parse_kite_instruments(KITE_CSV))
    rows = [
        {"id": "a", "strategy_type": "momentum", "instruments": ["NSE:INFY", 256265, "12345602", "nse:tcs"]},
        {"id": "b", "strategy_type": "momentum", "instruments": [1]},
    ]
    assert instrument_names(rows) == ["NSE:INFY", "nse:tcs"]
    resolved = resolve_instruments(rows, resolver)
    assert resolved[0]["instruments"] == [408065, 256265, 12345602, 2953217]
    assert resolved[1] == rows[1] and resolved[1] is not rows[1]
    assert rows[0]["instruments"][0] == "NSE:INFY", "the input rows are not modified"
    with pytest.raises(InstrumentError, match=r"strategy 'c': resolve instrument: no instrument 'NSE:NOPE'"):
        resolve_instruments([{"id": "c", "instruments": ["NSE:NOPE"]}], resolver)


def test_seed_accepts_exchange_symbol_names(cli: CliRunner, database: str, tmp_path: Path) -> None:
    from connectors.postgres import load_strategies

    csv_file = tmp_path / "instruments.csv"
    csv_file.write_text(KITE_CSV)
    assert cli.invoke(app, ["instruments", "load", "--file", str(csv_file)]).exit_code == 0
    strategies = tmp_path / "strategies.yaml"
    strategies.write_text(
        "strategies:\n"
        "  - {id: named, strategy_type: momentum, instruments: ['NSE:INFY', 2953217], parameters: {}}\n"
    )
    result = cli.invoke(app, ["seed", "--strategies", str(strategies)])
    assert result.exit_code == 0, result.output
    assert [row["instruments"] for row in load_strategies(database) if row["id"] == "named"] == [
        [408065, 2953217]
    ]

    strategies.write_text("strategies:\n  - {id: bad, strategy_type: momentum, instruments: ['NSE:NOPE']}\n")
    result = cli.invoke(app, ["seed", "--strategies", str(strategies)])
    assert result.exit_code == 2
    assert "NSE:NOPE" in result.output
    assert not [row for row in load_strategies(database) if row["id"] == "bad"]
