"""Live Zerodha orders through the executor, on the local Kite server and real Postgres and Redis.

The route comes from :func:`dataflows.zerodha.zerodha_route` exactly as the
pipeline will build it; Kite is the local server of ``kite_server.py``.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, date, datetime
from typing import Any

import pytest
from pydantic import SecretStr

from connectors.kite.halts import clear_halts, read_postgres
from connectors.kite.placer import order_tag, trading_day
from connectors.kite.store import OrderIntent, ZerodhaStore
from connectors.postgres import seed_strategies
from dataflows.clock import event_time_clock
from dataflows.execution_routes import Executor
from dataflows.live import Servers
from dataflows.settings import Settings
from dataflows.zerodha import zerodha_route
from operators.fills import FillConfig, FillSimulator
from schemas.envelope import DlqEnvelope, FailedEnvelope, SubmittedEnvelope, event_id
from tests.zerodha.conftest import validated
from tests.zerodha.kite_server import ACCESS_TOKEN, API_KEY, API_SECRET, FakeKite, Scripted

pytestmark = pytest.mark.integration


def live_settings(kite: FakeKite, **extra: Any) -> Settings:
    values: dict[str, Any] = {
        "zerodha_live_trading": True,
        "kite_api_key": SecretStr(API_KEY),
        "kite_access_token": SecretStr(ACCESS_TOKEN),
        "kite_api_secret": SecretStr(API_SECRET),
        "kite_api_url": kite.base_url,
        "kite_timeout_s": 0.5,
        "retry_base_s": 0.01,
        "retry_max_s": 0.05,
        "retry_budget_s": 5.0,
        "strategy_reload_s": 0.1,
        "halt_refresh_s": 0.2,
        **extra,
    }
    return Settings(**values)


@pytest.fixture
def servers(migrated_postgres: str, redis_url: str) -> Servers:
    return Servers("unused:9092", redis_url, migrated_postgres)


def seed(postgres: str, strategy_id: str, token: int, *, enabled: bool = True) -> None:
    seed_strategies(
        postgres,
        [
            {
                "id": strategy_id,
                "strategy_type": "momentum",
                "instruments": [token],
                "parameters": {},
                "is_active": True,
                "zerodha_trading_enabled": enabled,
            }
        ],
    )


def executor(kite: FakeKite, servers: Servers, **extra: Any) -> Executor:
    route = zerodha_route(live_settings(kite, **extra), servers)
    assert route.mode == "live"
    return Executor(FillSimulator(FillConfig()), {"zerodha": route}, event_time_clock, "test")


def order_id_of(envelope: Any) -> str:
    return event_id("order", "zerodha", envelope.id)


def test_without_the_switch_or_credentials_zerodha_stays_dry_run(kite: FakeKite, servers: Servers) -> None:
    assert zerodha_route(live_settings(kite, zerodha_live_trading=False), servers).mode == "dry_run"
    assert zerodha_route(live_settings(kite, kite_access_token=SecretStr("")), servers).mode == "dry_run"
    assert zerodha_route(live_settings(kite, kite_api_key=SecretStr("")), servers).mode == "dry_run"
    assert Settings().zerodha_live is False  # the default


def test_a_live_order_is_placed_once_with_its_tag(
    kite: FakeKite, servers: Servers, token: int, unique: str, store: ZerodhaStore
) -> None:
    strategy = f"live_{unique}"
    seed(servers.postgres, strategy, token)
    signal = validated(strategy, token, quantity=10, price=1500.0)
    [submitted] = executor(kite, servers).execute(signal)
    assert isinstance(submitted, SubmittedEnvelope)
    assert (submitted.data.status, submitted.data.execution_mode) == ("SUBMITTED", "live")
    tag = order_tag(order_id_of(signal))
    [request] = kite.placements()
    assert request.form == {
        "exchange": "NSE",
        "tradingsymbol": f"T{unique.upper()}",
        "transaction_type": "BUY",
        "quantity": "10",
        "product": "MIS",
        "order_type": "MARKET",
        "validity": "DAY",
        "tag": tag,
    }
    assert len(tag) == 20
    [intent] = store.intents([tag]).values()
    assert (intent.order_id, intent.kite_order_id) == (
        order_id_of(signal),
        kite.orders_tagged(tag)[0]["order_id"],
    )
    # The same signal again (a replay): found by its tag, not placed again.
    [again] = executor(kite, servers).execute(signal)
    assert isinstance(again, SubmittedEnvelope)
    assert again.data.status == "OPEN"
    assert len(kite.placements()) == 1


def test_limit_order_on_the_tick_grid_and_cnc_per_strategy(
    kite: FakeKite, servers: Servers, token: int, unique: str
) -> None:
    strategy = f"swing_{unique}"
    seed(servers.postgres, strategy, token)
    ex = executor(kite, servers, zerodha_products={strategy: "CNC"}, zerodha_order_types={strategy: "LIMIT"})
    ex.execute(validated(strategy, token, price=1500.03))
    [request] = kite.placements()
    assert (request.form["product"], request.form["order_type"], request.form["price"]) == (
        "CNC",
        "LIMIT",
        "1500.05",
    )


def test_retry_after_a_timeout_does_not_place_a_second_order(
    kite: FakeKite, servers: Servers, token: int, unique: str
) -> None:
    strategy = f"retry_{unique}"
    seed(servers.postgres, strategy, token)
    kite.delay("POST /orders/regular", 1.5)  # Kite takes the order, answers after our 0.5 s timeout
    signal = validated(strategy, token)
    [submitted] = executor(kite, servers).execute(signal)
    assert isinstance(submitted, SubmittedEnvelope)
    assert submitted.data.status == "OPEN"
    assert len(kite.placements()) == 1
    assert len(kite.orders_tagged(order_tag(order_id_of(signal)))) == 1


def test_retry_while_kite_is_still_processing_the_timed_out_order(
    kite: FakeKite, servers: Servers, token: int, unique: str
) -> None:
    strategy = f"slow_{unique}"
    seed(servers.postgres, strategy, token)
    kite.slow_oms("POST /orders/regular", 0.8)  # the order reaches the book 0.3 s after our timeout
    signal = validated(strategy, token)
    [submitted] = executor(kite, servers).execute(signal)
    assert isinstance(submitted, SubmittedEnvelope)
    assert submitted.data.status == "OPEN"
    assert len(kite.placements()) == 1
    assert len(kite.orders_tagged(order_tag(order_id_of(signal)))) == 1


def test_an_order_first_tried_on_an_earlier_day_is_never_sent_again(
    kite: FakeKite, servers: Servers, token: int, unique: str, store: ZerodhaStore
) -> None:
    strategy = f"old_{unique}"
    seed(servers.postgres, strategy, token)
    signal = validated(strategy, token)
    tag = order_tag(order_id_of(signal))
    store.record_intent(
        OrderIntent(
            tag=tag,
            order_id=order_id_of(signal),
            strategy_id=strategy,
            instrument_token=token,
            exchange="NSE",
            tradingsymbol=f"T{unique.upper()}",
            side="BUY",
            quantity=10,
            product="MIS",
            order_type="MARKET",
            price=None,
            trading_day=date(2024, 1, 2),
        )
    )
    [failed] = executor(kite, servers).execute(signal)  # e.g. a dead letter replayed days later
    assert isinstance(failed, FailedEnvelope)
    assert failed.data.error_message == (
        f"KiteGuardError: zerodha live order {order_id_of(signal)}: first attempted on 2024-01-02; "
        "not placed again on a later day (check Kite's order history by its tag)"
    )
    assert kite.placements() == []


def test_refusals_become_failed_orders(kite: FakeKite, servers: Servers, token: int, unique: str) -> None:
    strategy = f"guard_{unique}"
    seed(servers.postgres, strategy, token)
    ex = executor(kite, servers, zerodha_max_order_notional=10_000)
    [big] = ex.execute(validated(strategy, token, quantity=10, price=1500.0, n=1))
    assert isinstance(big, FailedEnvelope)
    assert big.data.error_message.endswith("notional 15000.00 exceeds ZERODHA_MAX_ORDER_NOTIONAL 10000")
    [unknown] = ex.execute(validated(strategy, 4_000_000_001, quantity=1, price=10.0, n=2))
    assert isinstance(unknown, FailedEnvelope)
    assert "instrument token 4000000001 is not in the instruments table" in unknown.data.error_message
    seed(servers.postgres, f"off_{unique}", token, enabled=False)
    [disabled] = ex.execute(validated(f"off_{unique}", token, quantity=1, price=10.0, n=3))
    assert isinstance(disabled, FailedEnvelope)
    assert f"strategy 'off_{unique}' is not zerodha_trading_enabled" in disabled.data.error_message
    assert kite.placements() == []  # no guard let an order through
    message = "Insufficient funds. Required margin is 15.00 but available margin is 1.00."
    kite.script(
        "POST /orders/regular",
        Scripted(400, {"status": "error", "error_type": "OrderException", "message": message}),
    )
    [refused] = ex.execute(validated(strategy, token, quantity=1, price=10.0, n=4))
    assert isinstance(refused, FailedEnvelope)
    assert refused.data.error_message == (
        f"KiteOrderError: kite place_order: Kite OrderException (HTTP 400): {message}"
    )
    assert len(kite.placements()) == 1  # business refusals are not retried


def test_daily_order_cap(kite: FakeKite, servers: Servers, token: int, unique: str) -> None:
    strategy = f"cap_{unique}"
    seed(servers.postgres, strategy, token)
    store = ZerodhaStore(servers.postgres)
    try:
        already = store.orders_on(trading_day(datetime.now(UTC)))
    finally:
        store.close()
    ex = executor(kite, servers, zerodha_max_daily_orders=already + 2)
    results = [ex.execute(validated(strategy, token, quantity=1, price=10.0, n=n))[0] for n in range(3)]
    assert [type(r).__name__ for r in results] == ["SubmittedEnvelope", "SubmittedEnvelope", "FailedEnvelope"]
    assert isinstance(results[2], FailedEnvelope)
    assert f"{already + 2} orders already placed on" in results[2].data.error_message
    assert results[2].data.error_message.endswith("(ZERODHA_MAX_DAILY_ORDERS)")


def test_an_expired_token_halts_the_broker(
    kite: FakeKite, servers: Servers, token: int, unique: str, caplog: pytest.LogCaptureFixture
) -> None:
    strategy = f"auth_{unique}"
    seed(servers.postgres, strategy, token)
    ex = executor(kite, servers)
    kite.expire_token()
    try:
        with caplog.at_level(logging.CRITICAL, logger="alpha_panda.zerodha"):
            [letter] = ex.execute(validated(strategy, token, n=1))
        assert isinstance(letter, DlqEnvelope)
        info = letter.data.failure_info
        assert (info.error_type, info.error_class, info.retry_count) == (
            "authentication",
            "KiteTokenError",
            0,
        )
        assert letter.data.dlq_metadata.original_topic == "zerodha.signals.validated"
        assert "ALERT zerodha: Kite refused the access token; halting the broker" in caplog.text
        halts = read_postgres(servers.postgres)
        assert halts.reason("zerodha", strategy) == (
            "halted: zerodha/* is halted: authentication failure (KiteTokenError);"
            " run `alpha-panda kite login`"
        )
        # A new token comes, but the broker stays halted until someone resumes it.
        kite.tokens.add(ACCESS_TOKEN)
        time.sleep(0.3)
        [refused] = ex.execute(validated(strategy, token, n=2))
        assert isinstance(refused, FailedEnvelope)
        assert "halted: zerodha/* is halted: authentication failure" in refused.data.error_message
        assert kite.placements() == []
        for text in (ACCESS_TOKEN, API_SECRET):
            assert text not in caplog.text
            assert text not in str(letter.data)
    finally:
        clear_halts(servers.postgres, servers.redis, "zerodha", None)


def test_a_429_burst_is_retried_and_places_each_order_once(
    kite: FakeKite, servers: Servers, token: int, unique: str
) -> None:
    strategy = f"burst_{unique}"
    seed(servers.postgres, strategy, token)
    kite.max_orders_per_s = 3  # a stricter server than our 8/s limiter
    ex = executor(kite, servers)
    signals = [validated(strategy, token, quantity=1, price=10.0, n=n) for n in range(12)]
    results = [ex.execute(s)[0] for s in signals]
    assert all(isinstance(r, SubmittedEnvelope) for r in results)
    assert kite.rate_limited > 0
    tags = [order_tag(order_id_of(s)) for s in signals]
    assert [len(kite.orders_tagged(t)) for t in tags] == [1] * 12
