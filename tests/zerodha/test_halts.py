"""The kill switch: halt scopes, the polled reader, and its Redis/Postgres storage."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest

from connectors.kite.halts import (
    HALTS_KEY,
    READER_APPLICATION,
    HaltReader,
    clear_halts,
    mirror_to_redis,
    set_halt,
)
from connectors.kite.placer import order_tag, trading_day
from connectors.redis_portfolio import redis_client
from operators.halts import Halt, HaltFlags, HaltSet


def test_scopes() -> None:
    halts = HaltSet.of([Halt("zerodha", "*", "token expired"), Halt("*", "mom", "")])
    assert halts.reason("zerodha", "anything") == "halted: zerodha/* is halted: token expired"
    assert halts.reason("paper", "mom") == "halted: */mom is halted"
    assert halts.reason("paper", "other") is None
    assert halts.broker_halted("zerodha") and not halts.broker_halted("paper")
    assert HaltSet.of([Halt()]).reason("paper", "x") == "halted: */* is halted"


def test_flags_re_read_at_most_every_refresh_and_keep_the_last_good_answer() -> None:
    now = [0.0]
    answers: list[HaltSet | Exception] = [
        HaltSet(),
        HaltSet.of([Halt("zerodha")]),
        RuntimeError("redis down"),
        HaltSet(),
    ]
    reads = []

    def fetch() -> HaltSet:
        reads.append(now[0])
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    flags = HaltFlags(fetch, lambda: now[0], refresh_s=1.0)
    assert flags.reason("zerodha", "s") is None
    now[0] = 0.5
    assert flags.reason("zerodha", "s") is None  # cached
    now[0] = 1.0
    assert flags.reason("zerodha", "s") == "halted: zerodha/* is halted"
    now[0] = 2.0
    assert flags.reason("zerodha", "s") == "halted: zerodha/* is halted"  # read failed: last good flags
    now[0] = 3.0
    assert flags.reason("zerodha", "s") is None
    assert reads == [0.0, 1.0, 2.0, 3.0]


def test_order_tag_and_trading_day() -> None:
    assert order_tag("9f1c6a52-4d1e-5b8e-9a57-a1f4a9d0a7e1") == "ap9f1c6a524d1e5b8e9a"
    assert len(order_tag("9f1c6a52-4d1e-5b8e-9a57-a1f4a9d0a7e1")) == 20
    assert str(trading_day(datetime(2024, 1, 2, 19, 0, tzinfo=UTC))) == "2024-01-03"  # 00:30 IST


@pytest.mark.integration
def test_halt_flags_survive_redis_losing_them(migrated_postgres: str, redis_url: str, unique: str) -> None:
    strategy = f"halt_{unique}"
    reader = HaltReader(redis_url, migrated_postgres)
    try:
        set_halt(migrated_postgres, redis_url, Halt("zerodha", strategy, "manual"), by="test")
        assert reader().reason("zerodha", strategy) == f"halted: zerodha/{strategy} is halted: manual"
        client = redis_client(redis_url)
        client.delete(HALTS_KEY)  # Redis restarted without persistence
        assert reader().reason("zerodha", strategy) == f"halted: zerodha/{strategy} is halted: manual"
        assert client.hexists(HALTS_KEY, f"zerodha/{strategy}")  # re-mirrored from Postgres
        # Redis came back with a stale hash that says nothing is halted.
        stale = HaltReader(redis_url, migrated_postgres, verify_every=3)
        mirror_to_redis(client, HaltSet())
        assert [stale().reason("zerodha", strategy) for _ in range(3)] == [
            None,
            None,
            f"halted: zerodha/{strategy} is halted: manual",
        ]
        assert reader().reason("zerodha", strategy) == f"halted: zerodha/{strategy} is halted: manual"
        stale.close()
        client.close()
        broken = HaltReader("redis://127.0.0.1:1/0", migrated_postgres)  # nothing listens there
        assert broken().reason("zerodha", strategy) == f"halted: zerodha/{strategy} is halted: manual"
        broken.close()
        assert clear_halts(migrated_postgres, redis_url, "zerodha", strategy) == [f"zerodha/{strategy}"]
        assert reader().reason("zerodha", strategy) is None
    finally:
        clear_halts(migrated_postgres, redis_url, None, strategy)
        reader.close()


@pytest.mark.integration
def test_the_reader_keeps_one_postgres_connection_and_reopens_it(
    migrated_postgres: str, redis_url: str, unique: str
) -> None:
    strategy = f"conn_{unique}"

    def readers_connected() -> int:
        with psycopg.connect(migrated_postgres, autocommit=True) as conn:
            query = "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
            return int(conn.execute(query, (READER_APPLICATION,)).fetchone()[0])  # type: ignore[index]

    before = readers_connected()
    reader = HaltReader(redis_url, migrated_postgres, verify_every=1)  # every read verifies against Postgres
    try:
        set_halt(migrated_postgres, redis_url, Halt("zerodha", strategy, "manual"), by="test")
        assert all(reader().reason("zerodha", strategy) for _ in range(5))
        assert readers_connected() == before + 1  # five reads, one connection
        with psycopg.connect(migrated_postgres, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                (READER_APPLICATION,),
            )
        assert reader().reason("zerodha", strategy) == f"halted: zerodha/{strategy} is halted: manual"
        assert readers_connected() == 1  # reopened once
    finally:
        clear_halts(migrated_postgres, redis_url, None, strategy)
        reader.close()
    assert readers_connected() == 0
