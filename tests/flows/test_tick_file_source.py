"""The tick file source: lines split from chunks, in order, numbered, with every byte counted."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors import files
from connectors.files import TickFileSource

LINES = [b'{"n":%d}' % i for i in range(40)]


def _batches(path: Path, batch_size: int, resume: int | None = None) -> tuple[list, list[int], int]:
    progress: list[int] = []
    part = TickFileSource(path, batch_size=batch_size, on_progress=progress.append).build_part(
        "in", path.name, resume
    )
    out = []
    while True:
        try:
            out.extend(part.next_batch())
        except StopIteration:
            break
    snapshot = part.snapshot()
    part.close()
    return out, progress, snapshot


@pytest.mark.parametrize("read_bytes", [1, 7, 64, 1 << 20])
def test_lines_across_chunk_boundaries_come_whole_numbered_and_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, read_bytes: int
) -> None:
    monkeypatch.setattr(files, "READ_BYTES", read_bytes)
    body = b"".join(line + b"\n" for line in LINES[:10])
    body += b"\n   \n" + LINES[10] + b"\r\n" + b"  " + LINES[11] + b" \n"  # blank, spaces, CRLF, padding
    body += b"".join(line + b"\n" for line in LINES[12:39]) + LINES[39]  # no newline at the end
    path = tmp_path / "ticks.jsonl"
    path.write_bytes(body)
    batches, progress, snapshot = _batches(path, batch_size=16)
    assert [b.values for b in batches] == [LINES[:14], LINES[14:30], LINES[30:]]
    assert [b.offsets for b in batches] == [
        list(range(1, 11)) + [13, 14, 15, 16],
        list(range(17, 33)),
        list(range(33, 43)),
    ]
    assert sum(progress) == len(body)
    assert snapshot == 42


def test_reading_resumes_after_a_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(files, "READ_BYTES", 5)
    path = tmp_path / "ticks.jsonl"
    path.write_bytes(b"".join(line + b"\n" for line in LINES))
    batches, _, snapshot = _batches(path, batch_size=25, resume=17)
    assert [b.values for b in batches] == [LINES[17:40]]
    assert batches[0].offsets == list(range(18, 41))
    assert snapshot == 40


def test_an_empty_file_gives_no_batch(tmp_path: Path) -> None:
    path = tmp_path / "ticks.jsonl"
    path.write_bytes(b"")
    assert _batches(path, batch_size=4) == ([], [], 0)
