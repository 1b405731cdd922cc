"""The strategy set of a live flow: read from Postgres at start, and again whenever it changes."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Stream

from connectors.postgres import StrategyConfigSource, load_strategies
from dataflows.runtime.servers import Servers
from dataflows.settings import Settings
from operators.errors import ConfigError
from operators.strategy import StrategyConfig

log = logging.getLogger("alpha_panda.dataflows")


def parse_configs(rows: Sequence[dict[str, Any]]) -> list[StrategyConfig]:
    """Validate configuration rows; a bad row is logged and skipped, not fatal."""
    configs = []
    for row in rows:
        try:
            configs.append(StrategyConfig.from_mapping(row))
        except ConfigError as err:
            log.error("skipping strategy configuration %r: %s", row.get("id"), err)
    return configs


def initial_configs(servers: Servers) -> list[StrategyConfig]:
    """The strategy set at start, read from Postgres."""
    return parse_configs(load_strategies(servers.postgres))


def config_source(servers: Servers, settings: Settings) -> StrategyConfigSource | None:
    """The poll of ``strategy_configurations`` for hot reload; ``None`` when the flow does not tail Kafka.

    A finite run keeps its start set. Read it in the flow's tick input step
    (``also`` of :func:`dataflows.runtime.inputs.kafka_input_with` and
    :func:`~dataflows.runtime.inputs.kafka_batches`), never in an input step
    of its own: see :mod:`connectors.merged_source`.
    """
    if not settings.kafka_tail:
        return None
    return StrategyConfigSource(servers.postgres, settings.strategy_reload_s)


def config_updates(rows: Stream[list[dict[str, Any]]] | None) -> Stream[list[StrategyConfig]] | None:
    """New strategy sets from the rows :func:`config_source` emits whenever the table changes (or None)."""
    if rows is None:
        return None
    return op.map("parse_configurations", rows, parse_configs)
