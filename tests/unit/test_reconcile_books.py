"""Reconcile's books: fills in the order applied, rebuilt snapshots, what counts as stale."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from alpha_panda.reconcile import Account, Fill, _compare, _ordered, rebuild
from operators.portfolio import PortfolioConfig

T0 = datetime(2024, 1, 2, 3, 45, tzinfo=UTC)


def fill(order_id: str, side: str, quantity: int, price: float, fees: float, second: int) -> Fill:
    return Fill(order_id, "mom", 256265, side, quantity, price, fees, T0 + timedelta(seconds=second))


def test_the_design_example_rebuilds_exactly_and_marks_to_the_latest_tick() -> None:
    account = Account("paper", "mom")
    buy = fill("o1", "BUY", 100, 101.55075, 10.155075, 19)
    account.topic_fills = {"o1": buy}
    account.ledger_fills = {"o1": buy}
    snapshot = rebuild(account, PortfolioConfig(), {256265: (102.0, T0 + timedelta(seconds=30))})
    assert snapshot.cash == pytest.approx(989_834.769925, abs=1e-9)
    assert snapshot.positions["256265"].quantity == 100
    assert snapshot.positions["256265"].last_price == 102.0
    assert snapshot.timestamp == T0 + timedelta(seconds=30)


def test_ledger_only_fills_are_merged_by_time_into_the_topic_order() -> None:
    account = Account("paper", "mom")
    account.topic_fills = {"a": fill("a", "BUY", 1, 10.0, 0.0, 5), "c": fill("c", "BUY", 1, 10.0, 0.0, 3)}
    account.ledger_fills = {"b": fill("b", "BUY", 1, 10.0, 0.0, 4), "d": fill("d", "BUY", 1, 10.0, 0.0, 9)}
    # Topic order is kept even when its times go backwards; ledger-only fills slot in by time.
    assert [f.order_id for f in _ordered(account)] == ["b", "a", "c", "d"]


def test_stale_means_the_fills_disagree_not_the_marks() -> None:
    account = Account("paper", "mom")
    buy = fill("o1", "BUY", 100, 101.55075, 10.155075, 19)
    account.topic_fills = account.ledger_fills = {"o1": buy}
    account.rebuilt = rebuild(account, PortfolioConfig(), {})
    stored = msgspec.to_builtins(account.rebuilt)
    stored["positions"]["256265"]["last_price"] = 250.0  # a newer mark: not a difference
    stored["unrealized_pnl"] = 123.0
    account.redis = stored
    _compare(account)
    assert account.differences == []

    stored["positions"]["256265"]["quantity"] = 90
    stored["fees_paid"] = 0.0
    _compare(account)
    (difference,) = account.differences
    assert difference.kind == "redis_stale"
    assert difference.detail == (
        "Redis portfolio differs from the fills in fees_paid, position 256265 quantity 90 != 100"
    )


def test_fills_recorded_differently_are_named() -> None:
    account = Account("zerodha", "mom")
    account.topic_fills = {"o1": fill("o1", "BUY", 100, 101.5, 10.0, 1)}
    account.ledger_fills = {"o1": fill("o1", "SELL", 100, 101.5, 10.5, 1)}
    account.rebuilt = rebuild(account, PortfolioConfig(), {})
    _compare(account)
    assert [(d.kind, d.detail) for d in account.differences] == [
        ("fill_mismatch", "fill o1: ledger differs in side, fees"),
        ("redis_missing", "no Redis portfolio"),
    ]
