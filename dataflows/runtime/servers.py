"""Where the live flows and the CLI find Kafka, Redis and Postgres (:class:`dataflows.settings.Settings`).

A server URL left empty falls back to the local stack started by
``alpha-panda up`` under ``DATA_DIR`` (:func:`connectors.localstack.configured_or_local`).
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import TypeAlias

from connectors.localstack import SERVERS, ServersNotConfiguredError, StackUrls, configured_or_local
from dataflows.settings import Settings

Servers: TypeAlias = StackUrls
"""Where the live flows find Kafka, Redis and Postgres."""

__all__ = ["Servers", "ServersNotConfiguredError", "resolve_servers"]


def resolve_servers(
    settings: Settings, *, need: Collection[str] = SERVERS, data_dir: Path | None = None
) -> Servers:
    """Return the configured servers, filling gaps from the local stack's ``stack.json``.

    ``need`` names the servers that must resolve; ``data_dir`` overrides
    ``DATA_DIR`` (a command's ``--data-dir``).

    Raises:
        ServersNotConfiguredError: a needed server has no URL and there is no local stack.
    """
    return configured_or_local(
        data_dir or settings.data_dir,
        kafka=settings.kafka_bootstrap_servers,
        redis=settings.redis_url.get_secret_value(),
        postgres=settings.postgres_url.get_secret_value(),
        need=need,
    )
