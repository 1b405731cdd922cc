"""`reconcile --broker zerodha --adopt` is durable: the ledger reconcile rebuilds the adopted position.

Real Kafka, Postgres and Redis (a Redis database of its own: the Kite
comparison sums every zerodha portfolio there), the local Kite server and
the real ``alpha-panda`` console script.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import msgspec
import orjson
import psycopg
import pytest

from alpha_panda.reconcile import reconcile
from connectors.adjustments import read_adjustments
from connectors.kafka.admin import create_pipeline_topics
from connectors.kafka.records import produce
from connectors.postgres import ledger_batch, write_ledger
from connectors.redis_portfolio import portfolio_key, redis_client
from dataflows.live import Servers
from operators.portfolio import Portfolio, PortfolioConfig
from schemas.codec import encode
from schemas.envelope import FilledEnvelope, Outbound, event_id
from tests.order_updates import kite_filled
from tests.zerodha.kite_server import FakeKite
from tests.zerodha.test_zerodha_cli import cli_env, run

pytestmark = pytest.mark.integration
TOKEN = 408065
CONFIG = PortfolioConfig(starting_cash=Decimal(1_000_000))


def a_fill(strategy: str) -> FilledEnvelope:
    at = datetime(2024, 1, 2, 3, 45, tzinfo=UTC)
    return kite_filled(event_id("adopt_test", strategy), strategy, TOKEN, 10, 1500.0, 6.0, at)


def test_adopt_records_the_adjustment_so_reconcile_finds_nothing_again(
    kite: FakeKite, migrated_postgres: str, redis_url: str, kafka_bootstrap: str, unique: str, tmp_path: Path
) -> None:
    create_pipeline_topics(kafka_bootstrap, partitions=4, retention_ms=3_600_000)
    redis_own = redis_url.rsplit("/", 1)[0] + "/12"
    strategy = f"adopt_{unique}"
    fill = a_fill(strategy)
    # Our three stores agree: 10 shares at 1500 on the topic, in the ledger and in Redis.
    produce(kafka_bootstrap, "zerodha.orders.filled", [(strategy, encode(fill))])
    with psycopg.connect(migrated_postgres) as conn:
        write_ledger(conn, ledger_batch([Outbound("zerodha.orders.filled", strategy, fill)]))
    portfolio = Portfolio(CONFIG)
    state = portfolio.new_state()
    portfolio.on_fill(state, fill.data)
    snapshot = portfolio.snapshot(
        state, strategy_id=strategy, broker="zerodha", timestamp=fill.data.timestamp
    )
    client = redis_client(redis_own)
    client.set(portfolio_key("zerodha", strategy), msgspec.json.encode(snapshot))
    options = {
        "kafka": kafka_bootstrap,
        "redis_url": redis_own,
        "postgres_url": migrated_postgres,
        "brokers": ("zerodha",),
        "config": CONFIG,
        "strategies": [strategy],
    }
    # Kite says 12 at 1498.5 (two more shares bought by hand on Kite's own screen).
    kite.positions = [
        {
            "tradingsymbol": "INFY",
            "exchange": "NSE",
            "instrument_token": TOKEN,
            "product": "MIS",
            "quantity": 12,
            "average_price": 1498.5,
        }
    ]
    env = cli_env(kite, Servers(kafka_bootstrap, redis_own, migrated_postgres), tmp_path)
    try:
        assert reconcile(**options).differences == []
        before = run(env, "reconcile", "--broker", "zerodha")
        assert before.returncode == 1, before.stdout + before.stderr
        cells = [[c.strip() for c in line.split("│")[1:-1]] for line in before.stdout.splitlines()]
        assert [str(TOKEN), "NSE:INFY", "10", "12", "+2", "1,498.50"] in cells

        adopted = run(env, "reconcile", "--broker", "zerodha", "--adopt")
        assert adopted.returncode == 0, adopted.stdout + adopted.stderr
        assert f"{TOKEN}: adopted into {strategy}: 10 -> 12" in adopted.stdout

        stored = orjson.loads(client.get(portfolio_key("zerodha", strategy)) or b"{}")
        assert (
            stored["positions"][str(TOKEN)]["quantity"],
            stored["positions"][str(TOKEN)]["average_price"],
        ) == (
            12,
            1498.5,
        )
        assert stored["cash"] == 1_000_000 - 15_006.0  # cash is what our fills paid
        [adjustment] = [
            a for a in read_adjustments(migrated_postgres, "zerodha") if a.strategy_id == strategy
        ]
        assert (adjustment.instrument_token, adjustment.quantity, adjustment.previous_quantity) == (
            TOKEN,
            12,
            10,
        )
        assert adjustment.average_price == Decimal("1498.5")
        assert adjustment.reason == f"reconcile --adopt: Kite NSE:INFY adopted into {strategy}: 10 -> 12"

        again = run(env, "reconcile", "--broker", "zerodha")
        assert (again.returncode, again.stdout.strip()) == (
            0,
            "zerodha: our positions match Kite's positions and holdings",
        )
        assert reconcile(**options).differences == []  # the ledger with the adjustment = Redis

        # Without the recorded adjustment the ledger reconcile would call Redis stale (and --repair undo it).
        with psycopg.connect(migrated_postgres) as conn:
            conn.execute("DELETE FROM position_adjustments WHERE strategy_id = %s", (strategy,))
        [stale] = reconcile(**options).differences
        assert stale.kind == "redis_stale"
        assert f"position {TOKEN} quantity 12 != 10" in stale.detail
    finally:
        client.delete(portfolio_key("zerodha", strategy))
        client.close()
