"""Where the local stack's servers answer, read from its data directory (no processes started).

``alpha-panda up`` (:mod:`alpha_panda.localstack`) writes ``DATA_DIR/stack.json``
(each server's URL, password redacted, and port) and ``DATA_DIR/secrets.json``
(mode 0600: the local passwords, and the full URLs of external servers).
:class:`StackFiles` reads them back; :func:`configured_or_local` is the one
rule every command and flow follows: the configured URL, else the local
stack's.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

from connectors.errors import StackError

KAFKA: Final = "kafka"
REDIS: Final = "redis"
POSTGRES: Final = "postgres"
SERVERS: Final = (KAFKA, REDIS, POSTGRES)
DATABASE: Final = "alpha_panda"
POSTGRES_USER: Final = "postgres"
STATE_FILE: Final = "stack.json"
SECRETS_FILE: Final = "secrets.json"
"""Under ``DATA_DIR``, mode 0600: ``{"redis": password, "postgres": password}``, plus
``"external": {name: url}`` for servers that ``up`` was given by URL."""
SETTING_NAMES: Final = {KAFKA: "KAFKA_BOOTSTRAP_SERVERS", REDIS: "REDIS_URL", POSTGRES: "POSTGRES_URL"}


class ServersNotConfiguredError(StackError):
    """No URL for a server and no local stack to fall back to."""


@dataclass(frozen=True)
class StackUrls:
    """Where the three servers answer.

    ``kafka`` is a bootstrap list (``host:port``), ``redis`` a ``redis://``
    URL, ``postgres`` a ``postgresql://`` URL (may hold a password if
    external: never log it, see :func:`connectors.errors.redact_url`).
    """

    kafka: str
    redis: str
    postgres: str


def _read_object(path: Path) -> dict[str, Any]:
    try:
        stored = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return stored if isinstance(stored, dict) else {}


class StackFiles:
    """The state files of one data directory, read only."""

    def __init__(self, data_dir: Path) -> None:
        # Nothing is created here: reading ``urls`` of a missing stack must not make one.
        self.data_dir = Path(data_dir).absolute()

    @property
    def state_file(self) -> Path:
        """``stack.json``: each server's URL (password redacted), port and whether it is ours."""
        return self.data_dir / STATE_FILE

    @property
    def secrets_file(self) -> Path:
        """``secrets.json``: the passwords of the local Redis and Postgres (mode 0600)."""
        return self.data_dir / SECRETS_FILE

    def _read_state(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.state_file.read_text()))
        except FileNotFoundError:
            return {}

    def _read_secrets(self) -> dict[str, Any]:
        return _read_object(self.secrets_file)

    def passwords(self) -> dict[str, str]:
        """The local servers' passwords as ``secrets.json`` holds them.

        Raises:
            StackError: the file is missing or not a JSON object of strings.
        """
        path = self.secrets_file
        try:
            stored = json.loads(path.read_text())
        except FileNotFoundError:
            msg = f"{path}: missing; run `alpha-panda up` to create the local stack"
            raise StackError(msg) from None
        except ValueError as err:
            msg = f"{path}: not JSON ({err.__class__.__name__}); delete it to generate new passwords"
            raise StackError(msg) from None
        if not isinstance(stored, dict) or not all(
            isinstance(stored.get(name), str) and stored[name] for name in (REDIS, POSTGRES)
        ):
            msg = f"{path}: expected {{'redis': password, 'postgres': password}}"
            raise StackError(msg)
        return {REDIS: stored[REDIS], POSTGRES: stored[POSTGRES]}

    def server_url(self, name: str, port: int, *, database: str = DATABASE) -> str:
        """The URL of this stack's server ``name`` on ``port``, with its password."""
        if name == KAFKA:
            return f"127.0.0.1:{port}"
        password = quote(self.passwords()[name], safe="")
        if name == REDIS:
            return f"redis://:{password}@127.0.0.1:{port}/0"
        if name == POSTGRES:
            return f"postgresql://{POSTGRES_USER}:{password}@127.0.0.1:{port}/{database}"
        msg = f"unknown server {name!r}; known: {list(SERVERS)}"
        raise StackError(msg)

    @property
    def urls(self) -> StackUrls | None:
        """The URLs of the last ``up``, or None.

        With their passwords, from ``secrets.json``: this stack's own servers
        and the external URLs ``up`` was given (``stack.json`` shows them
        redacted).
        """
        state = self._read_state()
        if not all(name in state for name in SERVERS):
            return None
        return StackUrls(*(self._recorded_url(name, state[name]) for name in SERVERS))

    def _recorded_url(self, name: str, entry: Mapping[str, Any]) -> str:
        if entry.get("managed") and isinstance(entry.get("port"), int):
            return self.server_url(name, entry["port"])
        return self._read_secrets().get("external", {}).get(name) or str(entry["url"])


def configured_or_local(
    data_dir: Path,
    *,
    kafka: str = "",
    redis: str = "",
    postgres: str = "",
    need: Collection[str] = SERVERS,
) -> StackUrls:
    """Return each server's configured URL, else the one the local stack under ``data_dir`` recorded.

    ``need`` names the servers the caller uses; only those must resolve (a
    server not needed and not found is ``""``). The stack's files are read
    only when a needed URL is not configured.

    Raises:
        ServersNotConfiguredError: a needed server has no URL and there is
            no local stack; the message names the settings to set.
    """
    given = {KAFKA: kafka, REDIS: redis, POSTGRES: postgres}
    if all(given[name] for name in need):
        return StackUrls(kafka, redis, postgres)
    local = StackFiles(data_dir).urls
    if local is None:
        missing = [SETTING_NAMES[name] for name in SERVERS if name in need and not given[name]]
        names = ", ".join(missing[:-1]) + " and " + missing[-1] if len(missing) > 1 else missing[0]
        msg = f"no servers: set {names} or run `alpha-panda up` (no stack under {data_dir})"
        raise ServersNotConfiguredError(msg)
    return StackUrls(kafka or local.kafka, redis or local.redis, postgres or local.postgres)
