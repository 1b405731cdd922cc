"""Fixtures of the Zerodha tests: the local Kite server, instruments and signals on real Postgres."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest
from pydantic import SecretStr

from connectors.kite.client import KiteClient
from connectors.kite.ratelimit import RateLimiter
from connectors.kite.store import ZerodhaStore
from schemas.envelope import ValidatedEnvelope, event_id
from schemas.events import TradingSignal, ValidatedSignal
from tests.zerodha.kite_server import ACCESS_TOKEN, API_KEY, FakeKite, serve_kite


@pytest.fixture
def kite() -> Iterator[FakeKite]:
    with serve_kite() as server:
        yield server


@pytest.fixture
def client(kite: FakeKite) -> Iterator[KiteClient]:
    with KiteClient(
        SecretStr(API_KEY),
        SecretStr(ACCESS_TOKEN),
        base_url=kite.base_url,
        timeout_s=2.0,
        limiter=RateLimiter(8),
    ) as c:
        yield c


@pytest.fixture
def token(migrated_postgres: str, unique: str) -> int:
    """A fresh instrument token in ``instruments`` as ``NSE:T<unique>`` (tick 0.05)."""
    value = random.Random(unique).randrange(10**9, 2**32 - 1)
    with psycopg.connect(migrated_postgres) as conn:
        conn.execute(
            "INSERT INTO instruments (instrument_token, exchange_token, tradingsymbol, name, tick_size,"
            " lot_size, instrument_type, segment, exchange)"
            " VALUES (%s, %s, %s, %s, 0.05, 1, 'EQ', 'NSE', 'NSE')"
            " ON CONFLICT DO NOTHING",
            (value, value // 256, f"T{unique.upper()}", f"Test {unique}"),
        )
    return value


@pytest.fixture
def store(migrated_postgres: str) -> Iterator[ZerodhaStore]:
    s = ZerodhaStore(migrated_postgres)
    yield s
    s.close()


def validated(
    strategy_id: str, token: int, *, side: str = "BUY", quantity: int = 10, price: float = 1500.0, n: int = 0
) -> ValidatedEnvelope:
    """A validated zerodha signal envelope; ``n`` makes each one distinct."""
    at = datetime(2024, 1, 2, 3, 45, n % 60, tzinfo=UTC)
    signal = TradingSignal(strategy_id, token, side, quantity, price, at, 0.8)  # type: ignore[arg-type]
    data = ValidatedSignal(signal, quantity, price, {"max_position_size": True}, at)
    ident = event_id("test_validated", strategy_id, token, n)
    return ValidatedEnvelope(
        id=ident,
        ts=at,
        broker="zerodha",
        correlation_id=ident,
        causation_id=None,
        source="test",
        version=1,
        key=strategy_id,
        data=data,
    )
