"""Run a replay's flow on two processes of this machine: this one and a fork of it (``replay --processes 2``).

Bytewax runs a flow as a cluster of processes that talk over TCP on
loopback. The second process is a fork taken just before the run, so it
starts without importing everything again, and builds its own copy of the
flow. It runs worker 1 (the accounts, and the writer of every output file);
this process runs worker 0 (the file, decoding, the strategies) and any
progress display. When both are done the child hands back what its sink
counted, through a pipe, and exits.

A failure on either side stops both. The child's error, with the end of its
standard error (where Bytewax reports), is raised here as a
:class:`ReplayProcessError`.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import select
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import IO, Final

from bytewax.dataflow import Dataflow
from bytewax.testing import cluster_main

from connectors.files import OutputCounts, PortableCounts
from dataflows.runtime.collector import tune_collector
from dataflows.runtime.failures import first_failure, forget_failures
from schemas.errors import AlphaPandaError

CHILD_STDERR_SHOWN: Final = 2000
"""Characters of the child's standard error quoted when it fails."""
LISTENER_WAIT_S: Final = 5.0
"""Seconds the second process waits for the first to listen before connecting anyway."""
LISTENER_POLL_S: Final = 0.002
"""Seconds between two looks for the first process's listening socket."""
CHILD_WAIT_S: Final = 5.0
"""Seconds the child gets to finish and hand back its result once this process's run has ended."""


class ReplayProcessError(AlphaPandaError):
    """The second process of a two-process replay failed."""


def free_ports(count: int) -> list[int]:
    """``count`` TCP ports free on loopback just now (the system picks them)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def can_fork() -> bool:
    """Whether this process can run a flow on a fork of itself: a POSIX fork and no other thread alive."""
    return hasattr(os, "fork") and threading.active_count() == 1


def run_on_two_processes(build: Callable[[], tuple[Dataflow, OutputCounts]]) -> OutputCounts:
    """Run the flow ``build`` makes on two processes, worker 0 here; return both sinks' counts merged.

    ``build`` runs in both processes, after the fork, and must make the
    same flow in each. Raises :class:`ReplayProcessError` if the other
    process fails, or whatever the flow raised here.
    """
    if not can_fork():
        msg = "a two-process replay needs os.fork and no other thread in this process"
        raise ReplayProcessError(msg)
    addresses = [f"127.0.0.1:{port}" for port in free_ports(2)]
    read_end, write_end = os.pipe()
    child_err = tempfile.TemporaryFile()  # noqa: SIM115 - closed in _outcome, after the child is gone
    sys.stdout.flush()
    sys.stderr.flush()
    forget_failures()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child; its work is checked through what it hands back
        os.close(read_end)
        _child(build, addresses, write_end, child_err.fileno())
    os.close(write_end)
    try:
        flow, counts = build()
        tune_collector()
        cluster_main(flow, addresses, 0)
    except BaseException as err:
        own = first_failure()
        # Bytewax panics in both processes when a worker fails, and loses the error: the
        # cause is what this process's steps noted, or else what the other process reports.
        lost = own is None and type(err).__name__ == "PanicException"
        # The child is gone afterwards: given time to report only if its error is the cause.
        failure = _outcome(pid, read_end, child_err, within=CHILD_WAIT_S if lost else 0.0)[1]
        if own is not None:
            if isinstance(own, AlphaPandaError):
                raise own from None
            msg = f"replay: {describe_failure(own)}"
            raise ReplayProcessError(msg) from own
        if lost and failure is not None:
            raise ReplayProcessError(failure) from None
        raise
    portable, failure = _outcome(pid, read_end, child_err, within=None)
    if failure is not None:
        raise ReplayProcessError(failure)
    counts.merge(portable)
    return counts


def _outcome(
    pid: int, read_end: int, child_err: IO[bytes], *, within: float | None
) -> tuple[PortableCounts, str | None]:
    """The child's counts, or the message of its failure; the child is gone afterwards.

    ``within``: seconds to wait for its result, then it is stopped; None
    waits until it ends (after a run that went well here, it is finishing
    its files). The result is read as it is written: it can be larger than
    a pipe holds.
    """
    deadline = None if within is None else time.monotonic() + within
    payload = _read_until_closed(read_end, deadline)
    done, status = _ended(pid, deadline)
    try:
        if not done:
            return ({}, 0, {}), f"replay: the second process did not end within {within:g} s; it was stopped"
        try:
            outcome, value = pickle.loads(payload) if payload else ("error", _exit_text(status))  # noqa: S301
        except pickle.UnpicklingError:
            outcome, value = "error", _exit_text(status)
        if outcome == "ok":
            counts: PortableCounts = value
            return counts, None
        child_err.seek(0)
        tail = child_err.read().decode("utf-8", "replace")[-CHILD_STDERR_SHOWN:].strip()
        failure = f"replay: the second process failed: {value}" + (f"; it wrote: {tail}" if tail else "")
        return ({}, 0, {}), failure
    finally:
        child_err.close()


def _ended(pid: int, deadline: float | None) -> tuple[bool, int]:
    """Whether the child ended by ``deadline`` (None: wait for it), and its status; else it is killed."""
    while True:
        done, status = os.waitpid(pid, 0 if deadline is None else os.WNOHANG)
        if done:
            return True, status
        if deadline is not None and time.monotonic() >= deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            return False, os.waitpid(pid, 0)[1]
        time.sleep(0.01)


def _read_until_closed(fd: int, deadline: float | None) -> bytes:
    """Everything written to pipe ``fd`` until its writer closes it, or what came by ``deadline``."""
    chunks = []
    try:
        while True:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([fd], [], [], timeout)
            if not ready:
                break
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)


def _child(
    build: Callable[[], tuple[Dataflow, OutputCounts]], addresses: list[str], out_fd: int, err_fd: int
) -> None:  # pragma: no cover - runs in the fork
    payload: bytes
    code = 1
    try:
        os.dup2(err_fd, 2)  # Bytewax's notices (e.g. retrying the connection) are shown only on failure
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        flow, counts = build()
        tune_collector()
        await_listener(int(addresses[0].rsplit(":", 1)[1]))
        cluster_main(flow, addresses, 1)
        payload = pickle.dumps(("ok", counts.portable()))
        code = 0
    except BaseException as err:  # noqa: BLE001 - everything goes back to the parent, which raises it
        payload = pickle.dumps(("error", describe_failure(first_failure() or err)))
    try:
        with os.fdopen(out_fd, "wb") as pipe:
            pipe.write(payload)
    finally:
        os._exit(code)


def await_listener(port: int, within: float = LISTENER_WAIT_S) -> bool:
    """Wait until a socket listens on loopback ``port``; False if none did ``within`` seconds.

    Bytewax's process 1 connects to process 0 as soon as it starts, and
    tries again only a second later if nobody listens yet: looking first
    (in ``/proc/net/tcp``, without connecting) saves that second. Where
    there is no ``/proc/net/tcp`` it returns False at once.
    """
    wanted = f"0100007F:{port:04X}"
    deadline = time.monotonic() + within
    while True:
        try:
            with open("/proc/net/tcp", encoding="ascii") as table:  # noqa: PTH123 - a kernel table
                rows = table.read().splitlines()[1:]
        except OSError:
            return False
        if any(fields[1] == wanted and fields[3] == "0A" for fields in map(str.split, rows)):  # 0A: LISTEN
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(LISTENER_POLL_S)


def describe_failure(err: BaseException) -> str:
    """An error for a message: the project's own as it reads, any other with its type."""
    return str(err) if isinstance(err, AlphaPandaError) else f"{type(err).__name__}: {err}"


def _exit_text(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"it was killed by signal {os.WTERMSIG(status)}"
    return f"it exited with status {os.waitstatus_to_exitcode(status)} without a result"
