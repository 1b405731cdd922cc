"""Which dataflows `alpha-panda up` starts: Kite's order updates only with live Zerodha orders."""

from __future__ import annotations

from pydantic import SecretStr

from alpha_panda.orchestration import ALL_DATAFLOWS, DATAFLOW_SETS, dataflows_for
from alpha_panda.settings import Settings

LIVE = {"kite_api_key": SecretStr("k"), "kite_access_token": SecretStr("t"), "zerodha_live_trading": True}


def test_live_zerodha_adds_the_order_update_flow_to_either_mode() -> None:
    settings = Settings(**LIVE)
    assert dataflows_for(DATAFLOW_SETS["all-in-one"], settings) == ("pipeline", "zerodha_updates")
    assert dataflows_for(DATAFLOW_SETS["per-stage"], settings) == (
        "strategy_runner",
        "risk_manager",
        "trading_engine",
        "portfolio_manager",
        "zerodha_updates",
    )
    assert dataflows_for(("pipeline", "zerodha_updates"), settings) == ("pipeline", "zerodha_updates")


def test_dry_run_starts_the_mode_unchanged() -> None:
    for missing in ("kite_api_key", "kite_access_token"):
        settings = Settings(**{**LIVE, missing: SecretStr("")})
        assert dataflows_for(DATAFLOW_SETS["all-in-one"], settings) == ("pipeline",)
    switch_off = Settings(**{**LIVE, "zerodha_live_trading": False})
    assert dataflows_for(DATAFLOW_SETS["per-stage"], switch_off) == DATAFLOW_SETS["per-stage"]


def test_down_and_status_know_the_order_update_flow() -> None:
    assert "zerodha_updates" in ALL_DATAFLOWS
