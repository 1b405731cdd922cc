"""The output directory of ``alpha-panda replay``: what may be written there and removed.

A replay writes ``DIR/<topic>.jsonl`` for topics that received messages
(``DIR/<topic>.workerN.jsonl`` with several workers) and ``DIR/portfolio.json``.
Before it writes, :func:`check_out_dir` refuses a directory that holds the
input, and :func:`clear_previous_outputs` removes the previous run's outputs:
only regular files with exactly those names, nothing else.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from schemas.errors import AlphaPandaError
from schemas.topics import BROKERS, MARKET_TICKS, all_topics

PORTFOLIO_FILE: Final = "portfolio.json"
_WORKER_FILE: Final = re.compile(r"^(?P<topic>.+?)(?:\.worker\d+)?\.jsonl$")


class OutDirError(AlphaPandaError):
    """The replay output directory cannot be used as given."""


def output_topics(brokers: Iterable[str] = BROKERS) -> frozenset[str]:
    """Topics a replay may write a file for: every pipeline topic and DLQ, not the input ticks."""
    return frozenset(all_topics(tuple(brokers))) - {MARKET_TICKS}


def is_replay_output(name: str, topics: frozenset[str] | None = None) -> bool:
    """Tell whether a file name is one a replay writes (``<topic>[.workerN].jsonl``, ``portfolio.json``)."""
    if name == PORTFOLIO_FILE:
        return True
    match = _WORKER_FILE.match(name)
    return match is not None and match.group("topic") in (topics or output_topics())


def check_out_dir(ticks: Path, out: Path) -> None:
    """Refuse an output directory that would overwrite or delete the input.

    In: the tick file and the ``--out`` directory (which need not exist yet).

    Raises:
        OutDirError: ``out`` exists and is not a directory, or ``ticks``
            is inside ``out`` (symlinks resolved).
    """
    if out.exists() and not out.is_dir():
        msg = f"replay: --out {out} exists and is not a directory"
        raise OutDirError(msg)
    tick_path, out_path = ticks.resolve(), out.resolve()
    if tick_path.is_relative_to(out_path):
        msg = (
            f"replay: the tick file {ticks} is inside the output directory {out}; "
            "choose an --out directory that does not contain the input"
        )
        raise OutDirError(msg)


def clear_previous_outputs(out: Path, brokers: Iterable[str] = BROKERS) -> list[Path]:
    """Remove the previous replay's outputs from ``out``; return what was removed, sorted.

    Only regular files (not symlinks, not directories) directly in ``out``
    whose names :func:`is_replay_output` accepts are removed; every other
    file is left alone. A missing ``out`` removes nothing.
    """
    if not out.is_dir():
        return []
    topics = output_topics(brokers)
    removed = []
    for entry in sorted(out.iterdir()):
        if entry.is_file() and not entry.is_symlink() and is_replay_output(entry.name, topics):
            entry.unlink()
            removed.append(entry)
    return removed
