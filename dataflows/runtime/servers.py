"""Where the live flows and the CLI find Kafka, Redis and Postgres (:class:`dataflows.settings.Settings`).

A server URL left empty falls back to the local stack started by
``alpha-panda up`` under ``DATA_DIR`` (:func:`connectors.localstack.configured_or_local`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import TypeAlias

from connectors.errors import describe_error, redact_url
from connectors.localstack import SERVERS, ServersNotConfiguredError, StackUrls, configured_or_local
from connectors.probes import probe_kafka, probe_postgres, probe_redis
from dataflows.settings import Settings

log = logging.getLogger("alpha_panda.dataflows")

Servers: TypeAlias = StackUrls
"""Where the live flows find Kafka, Redis and Postgres."""

__all__ = ["Servers", "ServersNotConfiguredError", "await_servers", "resolve_servers", "wait_for"]


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


def wait_for(
    name: str,
    where: str,
    probe: Callable[[], None],
    *,
    timeout_s: float = 120.0,
    first_delay_s: float = 0.5,
    secret_urls: Sequence[str] = (),
) -> None:
    """Call ``probe`` until it succeeds, backing off exponentially; say which server and where.

    ``where`` is printed as given (redact it first); errors are printed with
    the secrets of ``secret_urls`` masked (:func:`connectors.errors.describe_error`).

    Raises:
        TimeoutError: still unreachable after ``timeout_s``.
    """
    delay, deadline, attempt = first_delay_s, time.monotonic() + timeout_s, 1
    while True:
        try:
            probe()
        except Exception as err:
            reason = describe_error(err, *secret_urls)
            if time.monotonic() + delay > deadline:
                msg = f"{name} at {where} still unreachable after {timeout_s:.0f} s: {reason}"
                raise TimeoutError(msg) from None
            log.warning(
                "%s at %s unreachable (attempt %d), retrying in %.1f s: %s",
                *(name, where, attempt, delay, reason),
            )
            time.sleep(delay)
            delay, attempt = min(delay * 2, 10.0), attempt + 1
        else:
            if attempt > 1:
                log.warning("%s at %s is reachable; starting", name, where)
            return


def await_servers(
    servers: Servers, *, kafka: bool = True, redis: bool = False, postgres: bool = False
) -> None:
    """Block until the servers a flow needs answer (clear log lines while waiting)."""
    if kafka:
        wait_for("Kafka", servers.kafka, lambda: probe_kafka(servers.kafka))
    if redis:
        where = redact_url(servers.redis)
        wait_for("Redis", where, lambda: probe_redis(servers.redis), secret_urls=[servers.redis])
    if postgres:
        wait_for(
            "PostgreSQL",
            redact_url(servers.postgres),
            lambda: probe_postgres(servers.postgres),
            secret_urls=[servers.postgres],
        )
