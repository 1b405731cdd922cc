"""Hot reload: a Bytewax source that emits the strategy configuration table whenever it changes."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from connectors.postgres.connection import connection_pool
from connectors.postgres.strategies import load_strategy_rows, strategies_digest

log = logging.getLogger("connectors.postgres")


EPOCH_WAKE = timedelta(milliseconds=50)
"""Longest a polling input sleeps, so that it never holds an epoch open."""


class _StrategyConfigPartition(StatefulSourcePartition[list[dict[str, Any]], None]):
    """Polls the configuration table; emits the full row list when its digest changes."""

    def __init__(self, url: str, poll_s: float) -> None:
        self._pool = connection_pool(url, "strategy-config", max_size=1)
        self._poll = timedelta(seconds=poll_s)
        self._next_poll = datetime.now(UTC)
        self._digest: str | None = None
        self._unreachable = False

    def next_batch(self) -> list[list[dict[str, Any]]]:
        now = datetime.now(UTC)
        if now < self._next_poll:
            return []
        self._next_poll = now + self._poll
        try:
            with self._pool.connection() as conn:
                rows = load_strategy_rows(conn)
        except psycopg.OperationalError as err:
            if not self._unreachable:
                log.warning("strategy config: Postgres unreachable, keeping the last rows: %s", err)
            self._unreachable = True
            return []
        self._unreachable = False
        digest = strategies_digest(rows)
        if digest == self._digest:
            return []
        self._digest = digest
        return [rows]

    def next_awake(self) -> datetime:
        # Wake at least every EPOCH_WAKE even between polls: a sleeping input
        # cannot close its epoch, and Bytewax holds every input (the whole
        # flow) until the epoch closes. Sleeping until the next poll (2 s)
        # capped a live flow at ~1.6k ticks/s with 1 s epochs. The live flows
        # read this source in their tick input step (connectors.merged_source),
        # whose activations close its epochs with the ticks'; as a step of its
        # own it closed each one up to EPOCH_WAKE late, later every epoch.
        return min(self._next_poll, datetime.now(UTC) + EPOCH_WAKE)

    def snapshot(self) -> None:
        # Nothing to keep: on resume the table is read and emitted afresh.
        return None

    def close(self) -> None:
        self._pool.close()


class StrategyConfigSource(FixedPartitionedSource[list[dict[str, Any]], None]):
    """A bytewax source of the strategy configuration table, for hot reload.

    Out: the full list of rows (as :func:`load_strategies` returns them,
    inactive ones included) once at start and again each time the content
    changes; the table is polled every ``poll_s`` seconds. One partition, so
    exactly one worker emits; fan it out with a keyed step downstream.
    While Postgres is unreachable nothing is emitted and the flow goes on.
    """

    def __init__(self, url: str, poll_s: float) -> None:
        self._url = url
        self._poll_s = poll_s

    def list_parts(self) -> list[str]:
        """The single partition."""
        return ["strategy_configurations"]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _StrategyConfigPartition:
        """Build the polling partition."""
        return _StrategyConfigPartition(self._url, self._poll_s)
