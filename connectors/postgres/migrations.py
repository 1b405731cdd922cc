"""The schema: packaged SQL migrations, applied once each under an advisory lock."""

from __future__ import annotations

import importlib.resources
import logging
from dataclasses import dataclass
from typing import Final

import psycopg

from connectors.errors import MigrationError
from connectors.postgres.connection import connect

log = logging.getLogger("connectors.postgres")

_MIGRATIONS_LOCK: Final = 0x616C7068  # pg_advisory_xact_lock key: one migrator at a time


@dataclass(frozen=True)
class Migration:
    """One SQL file of ``connectors/migrations``; ``version`` is its numeric prefix."""

    version: str
    name: str
    sql: str


def migrations() -> list[Migration]:
    """Return the packaged migrations in version order (``0001_init.sql`` -> ``0001``)."""
    folder = importlib.resources.files("connectors").joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            version, _, rest = entry.name.partition("_")
            found.append(Migration(version, rest.removesuffix(".sql"), entry.read_text("utf-8")))
    return sorted(found, key=lambda m: m.version)


def apply_migrations(url: str) -> list[str]:
    """Apply every migration not yet recorded in ``schema_migrations``; idempotent.

    All pending migrations run in one transaction under an advisory lock, so
    concurrent bootstraps are safe and a failure leaves the schema unchanged.
    Returns the versions applied now (empty when up to date).

    Raises:
        MigrationError: a migration failed (names its file).
        PostgresConnectorError: Postgres is unreachable.
    """
    applied: list[str] = []
    with connect(url, "apply_migrations") as conn:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATIONS_LOCK,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {row["version"] for row in conn.execute("SELECT version FROM schema_migrations")}
        for migration in migrations():
            if migration.version in done:
                continue
            try:
                with conn.transaction():
                    conn.execute(migration.sql.encode())  # no parameters: one simple-protocol batch
            except psycopg.Error as err:
                msg = f"migration {migration.version}_{migration.name}.sql failed: {err}"
                raise MigrationError(msg) from err
            conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                (migration.version, migration.name),
            )
            applied.append(migration.version)
    if applied:
        log.info("applied migrations %s", applied)
    return applied
