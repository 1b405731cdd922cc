"""Postgres migrations, strategy configuration, ledger sink and config source."""

from __future__ import annotations

import time
from typing import Any

import psycopg
import pytest
from bytewax import operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource, run_main

from connectors.errors import SinkInputError, StrategyRowError
from connectors.postgres import (
    LedgerSink,
    StrategyConfigSource,
    apply_migrations,
    ledger_batch,
    ledger_counts,
    ledger_fills,
    load_strategies,
    migrations,
    seed_strategies,
    set_strategy_active,
)
from tests.integration.builders import failed_out, filled_out, pnl_out, submitted_out
from tests.ledger_rows import ledger_orders

pytestmark = pytest.mark.integration


def test_migrations_are_idempotent(migrated_postgres: str) -> None:
    assert apply_migrations(migrated_postgres) == []
    assert apply_migrations(migrated_postgres) == []
    with psycopg.connect(migrated_postgres) as conn:
        versions = [v for (v,) in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
        tables = {t for (t,) in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert versions == [m.version for m in migrations()]
    assert {"strategy_configurations", "orders", "fills", "schema_migrations"} <= tables


def _strategy(sid: str, **extra: Any) -> dict[str, Any]:
    row = {
        "id": sid,
        "strategy_type": "momentum",
        "instruments": [256265, 738561],
        "parameters": {"lookback_period": 20, "momentum_threshold": 0.01},
    }
    return {**row, **extra}


def _mine(rows: list[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    return [r for r in rows if r["id"].startswith(prefix)]


def test_seed_load_and_switch_strategies(migrated_postgres: str, unique: str) -> None:
    a, b = f"{unique}_a", f"{unique}_b"
    assert seed_strategies(migrated_postgres, [_strategy(a), _strategy(b, zerodha_trading_enabled=True)]) == 2
    assert seed_strategies(migrated_postgres, [_strategy(a)]) == 0  # unchanged: not touched

    rows = _mine(load_strategies(migrated_postgres), unique)
    assert [r["id"] for r in rows] == [a, b]
    assert rows[0]["instruments"] == [256265, 738561]
    assert rows[0]["parameters"] == {"lookback_period": 20, "momentum_threshold": 0.01}
    assert rows[0]["is_active"] is True
    assert rows[0]["zerodha_trading_enabled"] is False
    assert rows[1]["zerodha_trading_enabled"] is True

    assert set_strategy_active(migrated_postgres, a, False) is True
    assert set_strategy_active(migrated_postgres, f"{unique}_nope", False) is False
    after = _mine(load_strategies(migrated_postgres), unique)
    assert after[0]["is_active"] is False
    assert after[0]["updated_at"] > rows[0]["updated_at"]

    with pytest.raises(StrategyRowError, match="instruments"):
        seed_strategies(migrated_postgres, [{"id": "x", "strategy_type": "momentum"}])


def _write(items: list, url: str, batch_size: int = 10) -> None:
    flow = Dataflow("ledger")
    stream = op.input("in", flow, TestingSource(items, batch_size=batch_size))
    op.output("ledger", stream, LedgerSink(url))
    run_main(flow)


def test_ledger_sink_is_idempotent_and_keeps_brokers_apart(migrated_postgres: str, unique: str) -> None:
    s = f"mom_{unique}"
    batch = [
        submitted_out("paper", s, f"{unique}-1"),
        filled_out("paper", s, f"{unique}-1"),
        filled_out("paper", s, f"{unique}-2"),
        submitted_out("zerodha", s, f"{unique}-1", status="DRY_RUN"),  # same order id, other broker
        failed_out("paper", s, f"{unique}-3"),
    ]
    _write(batch, migrated_postgres)
    _write(batch, migrated_postgres)  # the same batch again: a replay after recovery
    _write(list(reversed(batch)), migrated_postgres, batch_size=1)  # and one event at a time

    orders = [o for o in ledger_orders(migrated_postgres) if o["strategy_id"] == s]
    by_key = {(o["broker"], o["order_id"]): o for o in orders}
    assert len(orders) == 4
    assert by_key[("paper", f"{unique}-1")]["status"] == "FILLED"  # terminal wins, stays
    assert by_key[("zerodha", f"{unique}-1")]["status"] == "DRY_RUN"
    assert by_key[("paper", f"{unique}-3")]["status"] == "FAILED"
    assert by_key[("paper", f"{unique}-3")]["error_message"] == "insufficient margin"

    fills = [f for f in ledger_fills(migrated_postgres, "paper") if f["strategy_id"] == s]
    assert sorted(f["order_id"] for f in fills) == [f"{unique}-1", f"{unique}-2"]
    assert fills[0]["fill_price"] == 101.55075
    assert fills[0]["fees"] == 10.155075
    assert not [f for f in ledger_fills(migrated_postgres, "zerodha") if f["strategy_id"] == s]

    counts = ledger_counts(migrated_postgres)
    assert counts["orders"] >= 4 and counts["fills"] >= 2 and counts["failed"] >= 1


def test_ledger_batch_makes_one_order_row_per_broker_and_order() -> None:
    batch = ledger_batch(
        [
            submitted_out("paper", "s", "o1"),
            filled_out("paper", "s", "o1"),
            submitted_out("paper", "s", "o1"),
            submitted_out("zerodha", "s", "o1"),
        ]
    )
    assert [(row[0], row[1], row[7]) for row in batch.orders] == [
        ("paper", "o1", "FILLED"),
        ("zerodha", "o1", "SUBMITTED"),
    ]
    assert len(batch.fills) == 1
    with pytest.raises(SinkInputError, match="order envelope"):
        ledger_batch([pnl_out("paper", "s", 1.0)])


def _drain(part: Any, wait_s: float) -> list:
    """Drive a source partition like the runtime does, for at most ``wait_s``."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        batch = part.next_batch()
        if batch:
            return batch
        time.sleep(0.02)
    return []


def test_config_source_emits_at_start_and_after_each_change(migrated_postgres: str, unique: str) -> None:
    sid = f"{unique}_cfg"
    seed_strategies(migrated_postgres, [_strategy(sid)])
    source = StrategyConfigSource(migrated_postgres, poll_s=0.05)
    assert source.list_parts() == ["strategy_configurations"]
    part = source.build_part("config", "strategy_configurations", None)
    try:
        first = _drain(part, 5)
        assert len(first) == 1 and _mine(first[0], sid)[0]["is_active"] is True
        assert _drain(part, 0.3) == []  # unchanged table: nothing new

        with psycopg.connect(migrated_postgres) as conn:
            conn.execute("UPDATE strategy_configurations SET is_active = false WHERE id = %s", (sid,))
        second = _drain(part, 5)
        assert len(second) == 1 and _mine(second[0], sid)[0]["is_active"] is False
        assert part.snapshot() is None
    finally:
        part.close()


class _Stop(Exception):
    pass


def test_config_source_runs_in_a_dataflow(migrated_postgres: str, unique: str) -> None:
    sid = f"{unique}_flow"
    seed_strategies(migrated_postgres, [_strategy(sid)])
    seen: list[list[dict[str, Any]]] = []

    def react(_step: str, rows: list[dict[str, Any]]) -> None:
        seen.append(_mine(rows, sid))
        if len(seen) == 1:
            set_strategy_active(migrated_postgres, sid, False)
        else:
            raise _Stop

    flow = Dataflow("config_reload")
    op.inspect("react", op.input("config", flow, StrategyConfigSource(migrated_postgres, 0.05)), react)
    # A bytewax flow with a live source never ends on its own: raising from
    # the inspector is how this test stops it (bytewax wraps the exception).
    with pytest.raises(Exception, match="react"):
        run_main(flow)
    assert [rows[0]["is_active"] for rows in seen] == [True, False]
