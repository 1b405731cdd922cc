import gzip
from datetime import date

import pytest
from pydantic import SecretStr

from connectors.marketdata.errors import FeedAuthenticationError, InstrumentError
from connectors.marketdata.instruments import (
    KITE_COLUMNS,
    InstrumentResolver,
    fetch_kite_instruments,
    parse_kite_instruments,
)
from tests.marketdata.conftest import Answer, ScriptedHttp

CSV = (
    ",".join(KITE_COLUMNS)
    + """
408065,1594,INFY,"INFOSYS",1500.25,,0,0.05,1,EQ,NSE,NSE
256265,1001,NIFTY 50,"NIFTY 50",0,,0,0,0,EQ,INDICES,NSE
12345602,48225,NIFTY24JUN22500CE,"NIFTY",150.5,2024-06-27,22500,0.05,25,CE,NFO-OPT,NFO
"""
)


def test_parse_rows_typed() -> None:
    infy, nifty, option = parse_kite_instruments(CSV)
    assert infy.instrument_token == 408065 and infy.tradingsymbol == "INFY"
    assert infy.last_price == 1500.25 and infy.expiry is None and infy.tick_size == 0.05
    assert nifty.segment == "INDICES" and nifty.lot_size == 0
    assert option.expiry == date(2024, 6, 27) and option.strike == 22500.0
    assert option.lot_size == 25 and option.instrument_type == "CE" and option.key == "NFO:NIFTY24JUN22500CE"


def test_resolver() -> None:
    resolver = InstrumentResolver(parse_kite_instruments(CSV))
    assert resolver.resolve("NSE:INFY") == 408065
    assert resolver.resolve("nse:nifty 50") == 256265
    assert resolver.symbols()[408065] == "NSE:INFY"
    with pytest.raises(InstrumentError, match="no instrument 'BSE:INFY' among 3"):
        resolver.resolve("BSE:INFY")
    with pytest.raises(InstrumentError, match="not EXCHANGE:SYMBOL"):
        resolver.resolve("INFY")


def test_malformed_rows_name_line_and_field() -> None:
    bad = CSV.replace("2024-06-27", "27/06/2024")
    with pytest.raises(InstrumentError, match="line 4: expiry must be YYYY-MM-DD, got '27/06/2024'"):
        list(parse_kite_instruments(bad))
    with pytest.raises(InstrumentError, match="line 2: lot_size must be int, got 'x'"):
        list(parse_kite_instruments(CSV.replace("0.05,1,EQ", "0.05,x,EQ")))
    with pytest.raises(InstrumentError, match=r"lacks column\(s\) \['exchange'\]"):
        list(parse_kite_instruments(CSV.replace(",exchange\n", "\n", 1)))


def test_fetch_instruments_gzip_and_auth(http_server: ScriptedHttp) -> None:
    http_server.on("/instruments/NSE", Answer(200, gzip.compress(CSV.encode())))
    rows = fetch_kite_instruments(
        SecretStr("k"), SecretStr("tok"), base_url=http_server.base_url, exchange="NSE"
    )
    assert len(rows) == 3
    assert http_server.seen[0].headers["authorization"] == "token k:tok"
    http_server.on("/instruments", Answer(403, {"status": "error"}))
    with pytest.raises(FeedAuthenticationError, match="HTTP 403") as info:
        fetch_kite_instruments(SecretStr("k"), SecretStr("tok"), base_url=http_server.base_url)
    assert "tok" not in str(info.value)
