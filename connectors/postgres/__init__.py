"""PostgreSQL: connections, migrations, strategy configuration, the order/fill ledger, hot reload.

One module per concern: :mod:`~connectors.postgres.connection`,
:mod:`~connectors.postgres.migrations`, :mod:`~connectors.postgres.strategies`,
:mod:`~connectors.postgres.ledger` (:class:`LedgerSink`) and
:mod:`~connectors.postgres.config_source` (:class:`StrategyConfigSource`).
The names callers use are re-exported here. Market-data tables are
:mod:`connectors.marketdata.store`'s.
"""

from connectors.postgres.config_source import StrategyConfigSource
from connectors.postgres.connection import CONNECT_TIMEOUT_S, DEFAULT_RETRY_S, POSTGRES_RULES, ping
from connectors.postgres.ledger import (
    LedgerBatch,
    LedgerSink,
    ledger_batch,
    ledger_counts,
    ledger_fills,
    write_ledger,
)
from connectors.postgres.migrations import Migration, apply_migrations, migrations
from connectors.postgres.strategies import (
    load_strategies,
    seed_strategies,
    set_strategy_active,
    strategies_digest,
)

__all__ = [
    "CONNECT_TIMEOUT_S",
    "DEFAULT_RETRY_S",
    "POSTGRES_RULES",
    "LedgerBatch",
    "LedgerSink",
    "Migration",
    "StrategyConfigSource",
    "apply_migrations",
    "ledger_batch",
    "ledger_counts",
    "ledger_fills",
    "load_strategies",
    "migrations",
    "ping",
    "seed_strategies",
    "set_strategy_active",
    "strategies_digest",
    "write_ledger",
]
