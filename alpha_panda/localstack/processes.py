"""Processes the local stack starts: detached, recorded in pid files, told apart from pid reuse.

A pid file (``DATA_DIR/run/NAME.json``) records the pid and its start time
from ``/proc``; ``stop`` and ``kill`` act only on a process that still
matches both, and on what it started.
"""

from __future__ import annotations

import json
import logging
import os
import pwd
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

from alpha_panda.localstack.state import StackState
from connectors.errors import StackError, redact_url

log = logging.getLogger("alpha_panda.localstack")

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


def run_as_kwargs(user: str | None) -> dict[str, Any]:
    """``subprocess.Popen`` arguments that run the child as ``user`` (None: as this process)."""
    if user is None:
        return {}
    entry = pwd.getpwnam(user)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


class StackProcesses(StackState):
    """Start, inspect and stop the processes of one data directory (pid files under ``run/``)."""

    def __init__(
        self,
        data_dir: Path,
        *,
        start_timeout_s: float = 30.0,
        stop_timeout_s: float = 10.0,
    ) -> None:
        super().__init__(data_dir)
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    def _pid_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.json"

    def _read_pid_file(self, name: str) -> ManagedProcess | None:
        try:
            return ManagedProcess(**json.loads(self._pid_file(name).read_text()))
        except FileNotFoundError:
            return None

    def process(self, name: str) -> ManagedProcess | None:
        """Return the live process ``name`` started by this stack, or None."""
        record = self._read_pid_file(name)
        if record is None:
            return None
        child = self._children.get(record.pid)
        if child is not None:
            child.poll()  # reap it if it exited, so /proc no longer shows a zombie
        return record if _alive(record.pid, record.start_ticks) else None

    def start_process(  # each knob is a plain keyword
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

        Raises:
            StackError: a process of that name is already running, or
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
                    **run_as_kwargs(run_as),
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
