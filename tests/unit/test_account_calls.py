"""Accounts apart: a shard's recorded book calls, applied elsewhere, publish what the shard's own books do."""

from __future__ import annotations

import pickle
from datetime import timedelta

import pytest

from operators.account_books import AccountBooks
from operators.account_calls import (
    BOUNDARY,
    FLUSH,
    RELOAD,
    SIGNAL,
    AccountsApartError,
    RemoteBooks,
    signal_of,
)
from operators.execution import SimulatedExecution
from operators.fills import FillConfig, FillSimulator
from operators.portfolio import Portfolio, PortfolioConfig
from operators.risk import RiskConfig, RiskFilter
from operators.shard import ShardConfig, TradingShard
from operators.strategy import StrategyConfig
from schemas.codec import decode_tick_batch
from tests.flows.conftest import tick_line

TOKENS = (256265, 260105)
CONFIGS = [
    StrategyConfig(
        "mom",
        "momentum",
        TOKENS,
        (("lookback_period", 3), ("momentum_threshold", 0.01)),
        zerodha_trading_enabled=True,
    ),
    StrategyConfig("mr", "mean_reversion", TOKENS, (("lookback_period", 5),), zerodha_trading_enabled=True),
]
CONFIG = ShardConfig(brokers=("paper", "zerodha"), snapshot_interval=timedelta(seconds=3), service="t")


def _clock(at):  # noqa: ANN001, ANN202 - event time
    return at


def _collaborators() -> tuple[RiskFilter, Portfolio, object]:
    simulated = SimulatedExecution(FillSimulator(FillConfig()), _clock, "t")
    return (
        RiskFilter(RiskConfig(max_position_size=500)),
        Portfolio(PortfolioConfig()),
        lambda validated: simulated.execute(validated, "paper" if validated.broker == "paper" else "dry_run"),
    )


def _shard(*, apart: bool) -> TradingShard:
    risk, portfolio, execute = _collaborators()
    return TradingShard(CONFIGS, CONFIG, risk, portfolio, execute, _clock, accounts_apart=apart)  # type: ignore[arg-type]


def _batches() -> list:
    prices = [100.0, 101.0, 103.0, 99.0, 97.0, 100.0, 104.0, 108.0, 103.0, 98.0, 95.0, 99.0, 102.0]
    lines = []
    for second, price in enumerate(prices * 3):
        lines.append(tick_line(TOKENS[0], price, second))
        lines.append(tick_line(TOKENS[1], round(200.0 - price, 2), second))
    lines.insert(20, tick_line(TOKENS[0], 100.0, 86_400 * 30))  # far ahead: held, then dead-lettered
    return [decode_tick_batch(lines[:30]), decode_tick_batch(lines[30:])]


def test_recorded_calls_applied_elsewhere_publish_the_shards_own_messages() -> None:
    whole = _shard(apart=False)
    expected = [m for b in _batches() for m in whole.on_batch(b.ticks, b.times)] + whole.flush()

    apart = _shard(apart=True)
    risk, portfolio, execute = _collaborators()
    remote = RemoteBooks(AccountBooks(CONFIG, risk, portfolio, execute, _clock, {}))  # type: ignore[arg-type]
    got = []
    for batch in _batches():
        letters = apart.on_batch(batch.ticks, batch.times)
        got += remote.apply(pickle.loads(pickle.dumps(apart.take_calls())))  # as they cross processes
        got += letters
    letters = apart.flush()
    got += remote.apply(apart.take_calls()) + letters

    def by_topic(messages: list) -> dict[str, list]:
        topics: dict[str, list] = {}
        for m in messages:
            topics.setdefault(m.topic, []).append((m.key, m.envelope))
        return topics

    assert by_topic(got) == by_topic(expected)
    topics = {m.topic for m in expected}
    assert {
        "paper.orders.filled",
        "zerodha.orders.filled",
        "paper.pnl.snapshots",
        "market.ticks.dlq",
    } <= topics
    assert apart.account_names == [] and remote.books.names == whole.account_names


def test_only_changed_prices_of_signalled_instruments_travel_with_a_boundary() -> None:
    apart = _shard(apart=True)
    for batch in _batches():
        apart.on_batch(batch.ticks, batch.times)
    calls = apart.take_calls()
    assert calls[0].kind == RELOAD and calls[0].configs == tuple(CONFIGS)
    boundaries = [c for c in calls if c[0] == BOUNDARY]
    signals = [c for c in calls if c[0] == SIGNAL]
    assert signals and boundaries
    signalled = set()
    sent: dict[int, float] = {}
    for call in calls:
        if call[0] == SIGNAL:
            assert type(call) is tuple  # plain values: what crosses processes pickles cheaply
            signalled.add(signal_of(call)[0].instrument_token)
        elif call.kind == BOUNDARY:
            assert set(call.prices) <= signalled
            assert all(sent.get(t) != p for t, p in call.prices.items())
            sent.update(call.prices)
    apart.flush()
    assert [c.kind for c in apart.take_calls()] == [FLUSH]


def test_recorded_books_take_no_live_order_updates() -> None:
    apart = _shard(apart=True)
    with pytest.raises(
        AccountsApartError,
        match="accounts run apart take no live order updates: run live flows with the accounts in the shard",
    ):
        apart.on_order_update(object())  # type: ignore[arg-type] - refused before it is read
