"""The peers' tape and rule, reimplemented in the project, equal the shared scripts byte for byte.

The shared scripts live in ``shared/peers/`` beside the clone (``../shared``
in CI; a worktree may sit one level deeper), found by walking up from here.
Missing scripts fail the test: they are the definition being checked.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from alpha_panda.bench.peer_tape import write_peer_tape
from alpha_panda.bench.reference import read_csv_ticks, reference_fills


def _shared_peers() -> Path:
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / "shared" / "peers"
        if (candidate / "make_tape.py").is_file():
            return candidate
    pytest.fail(f"shared/peers/make_tape.py not found beside any parent of {here} (expected ../shared)")


@pytest.mark.parametrize(("instruments", "ticks"), [(1, 50), (7, 3_000), (30, 2_001)])
def test_tape_is_byte_identical_to_make_tape(tmp_path: Path, instruments: int, ticks: int) -> None:
    theirs = tmp_path / "theirs"
    script = _shared_peers() / "make_tape.py"
    subprocess.run([sys.executable, str(script), str(instruments), str(ticks), str(theirs)], check=True)
    ours = write_peer_tape(instruments, ticks, tmp_path / "ours")
    assert ours.jsonl.read_bytes() == (theirs / "ticks.jsonl").read_bytes()
    assert ours.csv.read_bytes() == (theirs / "ticks.csv").read_bytes()
    assert len(ours.jsonl.read_bytes().splitlines()) == ticks


def test_reference_rule_counts_what_the_peers_reference_counts(tmp_path: Path) -> None:
    tape = write_peer_tape(7, 3_000, tmp_path)
    ours = reference_fills(read_csv_ticks(tape.csv))
    script = _shared_peers() / "reference.py"
    line = subprocess.run(
        [sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, check=True
    )
    fields = dict(part.split("=", 1) for part in line.stdout.split())
    assert (int(fields["buys"]), int(fields["sells"])) == (ours.buys, ours.sells)
    assert ours.fills > 0
    assert (ours.ticks, ours.instruments) == (3_000, 7)


def test_reference_rule_on_prices() -> None:
    # 19 flat prices, then +2% (edge up: BUY), flat (no edge), back down past -1% (edge down: SELL).
    up = [(1, 100.0)] * 19 + [(1, 102.0), (1, 102.0)]
    result = reference_fills(up + [(1, 100.0)] * 18 + [(1, 98.0)])
    assert (result.buys, result.sells) == (1, 1)


def test_reference_rule_never_sells_what_is_not_held() -> None:
    falling = [(1, 100.0)] * 19 + [(1, 97.0)]
    assert (reference_fills(falling).buys, reference_fills(falling).sells) == (0, 0)
