"""The ``peers`` scenario: ``alpha-panda replay`` on the peers' tape, against their reference rule.

Per instrument count: the tape of ``../shared/peers/make_tape.py``
(:mod:`alpha_panda.bench.peer_tape`, seed 7), then ``alpha-panda replay`` as
a child process, exactly as ``../shared/peers/alpha_panda_bench.sh`` runs it:
one momentum strategy over every token (lookback 20, threshold 0.01,
position size 1), paper broker only, risk limits opened
(``MAX_DAILY_TRADES``/``MAX_POSITION_SIZE`` huge, ``MAX_PRICE_DEVIATION``
1.0) so that only the rule decides, and, as the peers have, a cash of 1e9
(``STARTING_CASH``; at 10,000 instruments the default 1,000,000 runs out
and risk rejects BUYs the rule makes). Time is the whole child process, as
the peers' script times it; peak RSS is the child's (the sum of both
processes' when it runs on two). Fills
are counted in ``paper.orders.filled.jsonl`` and compared with the
plain-Python reference rule (:mod:`alpha_panda.bench.reference`) over the
same tape's CSV: they must be equal. A replay on two processes is followed,
each round, by one with ``--processes 1``: issue 14's goal 4 on this tape.

The peers themselves (NautilusTrader, backtrader) are not run here: compare
with ``../shared/peers/run_all.sh`` on the same machine, in the same run.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from alpha_panda.bench.config import BenchConfig
from alpha_panda.bench.peer_tape import PeerTape, write_peer_tape
from alpha_panda.bench.reference import LOOKBACK, THRESHOLD, read_csv_ticks, reference_fills
from alpha_panda.bench.scenarios import Log
from alpha_panda.bench.scenarios.replay import median_ratio

OPEN_LIMITS = {
    "MAX_DAILY_TRADES": "1000000000",
    "MAX_POSITION_SIZE": "1000000000",
    "MAX_PRICE_DEVIATION": "1.0",
    "STARTING_CASH": "1000000000",
    "ACTIVE_BROKERS": "paper",
}
"""The settings the replay runs with: paper only, risk limits out of the rule's way, the peers' cash."""

LAUNCHER = """
import json, os, sys, time

def tree(pid):
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return pids

def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            return next((int(l.split()[1]) for l in f if l.startswith("VmRSS:")), 0)
    except OSError:
        return 0

start = time.perf_counter()
pid = os.posix_spawn(sys.executable, sys.argv[2:], os.environ)
peak_sum = most = 0
while True:
    done, status, usage = os.wait4(pid, os.WNOHANG)
    if done:
        break
    pids = tree(pid)
    most = max(most, len(pids))
    peak_sum = max(peak_sum, sum(map(rss_kib, pids)))
    time.sleep(0.02)
seconds = time.perf_counter() - start
with open(sys.argv[1], "w") as out:
    json.dump({"status": status, "maxrss_kib": usage.ru_maxrss, "peak_sum_rss_kib": peak_sum,
               "processes": most, "seconds": seconds}, out)
"""
"""A small process between the bench and the replay, which spawns the replay and reaps it.

Linux counts in a process's peak RSS the memory of the process it was
forked from (the image it replaced at exec), so a replay forked straight
from the bench would report the bench's RSS if that is larger. Spawned from
this launcher, it starts from a few MiB and reports its own peak. A replay
on two processes (``--processes 2``, the default for these tapes) forks a
second one: the launcher samples the resident memory of both every 20 ms
and reports the peak of the sum, which counts the pages they share twice.
"""

FILLS_FILE = "paper.orders.filled.jsonl"


def strategy_rows(tape: PeerTape) -> dict[str, Any]:
    """The strategies file: one momentum strategy over every token of the tape, paper only."""
    return {
        "strategies": [
            {
                "id": "mom",
                "strategy_type": "momentum",
                "instruments": tape.tokens(),
                "parameters": {
                    "lookback_period": LOOKBACK,
                    "momentum_threshold": THRESHOLD,
                    "position_size": 1,
                },
                "is_active": True,
                "zerodha_trading_enabled": False,
            }
        ]
    }


def count_fills(path: Path) -> tuple[int, int]:
    """(BUY, SELL) fills of a ``*.orders.filled.jsonl`` file, read line by line (0, 0 if absent)."""
    buys = sells = 0
    if not path.exists():
        return 0, 0
    with path.open("rb") as lines:
        for line in lines:
            if b'"side":"BUY"' in line:
                buys += 1
            elif b'"side":"SELL"' in line:
                sells += 1
    return buys, sells


def run_replay_child(
    tape: PeerTape, work: Path, timeout: float = 3600, processes: int | None = None
) -> dict[str, Any]:
    """Run ``alpha-panda replay`` over ``tape`` in a child process; seconds, peak RSS and fills.

    ``processes``: its ``--processes`` (None: the replay's default, two from 8 MiB).

    Raises:
        RuntimeError: the replay exited non-zero (its last output lines are in the message).
        TimeoutError: it ran longer than ``timeout`` seconds (it is killed).
    """
    strategies = work / "strategies.yaml"
    strategies.write_text(json.dumps(strategy_rows(tape)))  # JSON is YAML
    out, log, result = work / "out", work / "replay.log", work / "replay.json"
    replay = [sys.executable, "-m", "alpha_panda.cli", "replay", "--quiet"]
    replay += ["--ticks", str(tape.jsonl), "--strategies", str(strategies), "--out", str(out)]
    if processes is not None:
        replay += ["--processes", str(processes)]
    command = [sys.executable, "-c", LAUNCHER, str(result), *replay]
    with log.open("wb") as output:
        launcher = subprocess.Popen(
            command,
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, **OPEN_LIMITS},
            start_new_session=True,  # its own process group, so that a timeout stops the replay too
        )
        try:
            launcher.wait(timeout)
        except subprocess.TimeoutExpired as err:
            msg = f"alpha-panda replay over {tape.jsonl} did not finish within {timeout:.0f} s"
            raise TimeoutError(msg) from err
        finally:
            if launcher.poll() is None:  # timed out or interrupted: stop the replay with it
                os.killpg(launcher.pid, signal.SIGKILL)
                launcher.wait()
    if launcher.returncode != 0:  # the launcher itself failed
        measured, code = {}, launcher.returncode
    else:
        measured = json.loads(result.read_text())
        code = os.waitstatus_to_exitcode(measured["status"])
    if code != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
        msg = f"alpha-panda replay over {tape.jsonl} exited {code}:\n{tail}"
        raise RuntimeError(msg)
    buys, sells = count_fills(out / FILLS_FILE)
    return {
        "seconds": measured["seconds"],
        # Linux reports kB; the larger of the biggest process's peak and the sampled peak of all
        "peak_rss_bytes": max(measured["maxrss_kib"], measured["peak_sum_rss_kib"]) * 1024,
        "largest_process_rss_bytes": measured["maxrss_kib"] * 1024,
        "processes": measured["processes"],
        "buys": buys,
        "sells": sells,
        "fills": buys + sells,
        "outputs": sorted(path.name for path in out.glob("*.jsonl")),
    }


def _fresh_run(tape: PeerTape, work: Path, name: str, processes: int | None) -> dict[str, Any]:
    """:func:`run_replay_child` in a directory of its own, removed afterwards (a replay writes ~200 MB)."""
    where = work / name
    where.mkdir()
    try:
        return run_replay_child(tape, where, processes=processes)
    finally:
        shutil.rmtree(where, ignore_errors=True)


def peer_run(
    instruments: int,
    ticks: int,
    log: Log,
    *,
    repeat: int = 1,
    processes: int | None = None,
    compare: bool = True,
) -> dict[str, Any]:
    """One tape: generate it, run the reference and the replay, compare the fills.

    The replay runs ``repeat`` times (``--processes processes``; None: its
    default). When it runs on two processes and ``compare`` is set, each
    run is followed by one with ``--processes 1``, and
    ``two_process_speedup`` is the median over these rounds of the one
    process's seconds over the two processes' (issue 14, goal 4).
    """
    work = Path(tempfile.mkdtemp(prefix="alpha-panda-peers-"))
    runs: list[dict[str, Any]] = []
    singles: list[dict[str, Any]] = []
    try:
        start = time.perf_counter()
        tape = write_peer_tape(instruments, ticks, work / "tape")
        generated = time.perf_counter() - start
        reference = reference_fills(read_csv_ticks(tape.csv))
        log(f"peers: {instruments:,} instruments, {ticks:,} ticks; reference {reference.fills:,} fills")
        for round_ in range(repeat):
            runs.append(_fresh_run(tape, work, f"replay-{round_}", processes))
            log(f"peers: replay {runs[-1]['fills']:,} fills in {runs[-1]['seconds']:.1f} s")
            if compare and runs[-1]["processes"] == 2:
                singles.append(_fresh_run(tape, work, f"one-process-{round_}", 1))
                log(f"peers: replay on one process in {singles[-1]['seconds']:.1f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    seconds = [run["seconds"] for run in runs]
    replay = {**runs[-1], "seconds_runs": seconds, "seconds": statistics.median(seconds)}
    one_process = None
    if singles:
        one = [run["seconds"] for run in singles]
        median = statistics.median(one)
        one_process = {
            "seconds_runs": one,
            "seconds": median,
            "ticks_per_s": ticks / median,
            "fills": singles[-1]["fills"],
            "two_process_speedup": median_ratio(one, seconds),
        }
    return {
        "instruments": instruments,
        "ticks": ticks,
        "tape_seconds": generated,
        "replay": {**replay, "ticks_per_s": ticks / replay["seconds"]},
        "one_process": one_process,
        "reference": {
            "buys": reference.buys,
            "sells": reference.sells,
            "fills": reference.fills,
            "seconds": reference.seconds,
            "ticks_per_s": ticks / reference.seconds if reference.seconds else None,
        },
        "fills_match": (replay["buys"], replay["sells"]) == (reference.buys, reference.sells),
    }


def peers_scenario(config: BenchConfig, log: Log) -> list[dict[str, Any]]:
    """The peers' workload at every ``peer_instruments`` size, ``peer_ticks`` ticks each."""
    return [
        peer_run(
            instruments,
            config.peer_ticks,
            log,
            repeat=config.repeat,
            processes=config.peer_processes,
            compare=config.processes,
        )
        for instruments in config.peer_instruments
    ]
