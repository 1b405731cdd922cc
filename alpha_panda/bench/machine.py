"""The machine a bench ran on: CPU, cores, memory, versions, and this process's RSS."""

from __future__ import annotations

import os
import platform
import resource
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any


def _proc_fields(path: str, names: Sequence[str]) -> dict[str, int]:
    """Return ``kB`` fields of a /proc file in bytes (empty where /proc is absent)."""
    found: dict[str, int] = {}
    try:
        for line in Path(path).read_text().splitlines():
            name, _, rest = line.partition(":")
            if name in names:
                found[name] = int(rest.split()[0]) * 1024
    except OSError:
        pass
    return found


def rss() -> dict[str, int]:
    """Process memory in bytes: current RSS (``VmRSS``) and peak RSS (``VmHWM``/ru_maxrss)."""
    fields = _proc_fields("/proc/self/status", ("VmRSS", "VmHWM"))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports kB
    return {"rss_bytes": fields.get("VmRSS", peak), "peak_rss_bytes": fields.get("VmHWM", peak)}


def hardware() -> dict[str, Any]:
    """CPU model, logical cores (total and usable), memory in bytes, OS."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "memory_bytes": _proc_fields("/proc/meminfo", ("MemTotal",)).get("MemTotal"),
        "platform": platform.platform(),
    }


def loop_seconds(additions: int, tries: int = 3) -> float:
    """Seconds a plain Python loop of ``additions`` additions takes here (the best of ``tries``).

    The machine's speed for pure Python at this moment: on a shared VM it
    moves by 2x within minutes, so a report gives it at its start and end,
    and figures of two reports compare only alongside it.
    """
    best = float("inf")
    for _ in range(tries):
        started = time.perf_counter()
        total = 0
        for i in range(additions):
            total += i
        best = min(best, time.perf_counter() - started)
    return best


def software() -> dict[str, str]:
    """Versions of Python, Alpha Panda and the libraries on the hot path."""
    versions = {"python": platform.python_version(), "implementation": platform.python_implementation()}
    for name in ("alpha-panda", "bytewax", "msgspec", "orjson"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "missing"
    return versions
