"""The replay's background file writer: every byte, in order, and failures raised where the flow runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.file_writer import BackgroundWriter, WriteFailedError


def test_every_file_gets_its_bytes_in_order_whatever_the_chunking(tmp_path: Path) -> None:
    writer = BackgroundWriter(chunk_bytes=64, queued=2)
    a = (tmp_path / "a.jsonl").open("wb")
    b = (tmp_path / "b.jsonl").open("wb")
    expected_a, expected_b = bytearray(), bytearray()
    for i in range(500):
        line_a = b'{"n":%d}\n' % i
        writer.write(a, line_a)
        expected_a += line_a
        if i % 7 == 0:  # a second file, written less often: its last chunk is never full
            line_b = b"x" * (i % 50) + b"\n"
            writer.write(b, line_b)
            expected_b += line_b
    writer.close()

    assert (tmp_path / "a.jsonl").read_bytes() == bytes(expected_a)
    assert (tmp_path / "b.jsonl").read_bytes() == bytes(expected_b)
    assert a.closed
    assert b.closed


def test_a_write_larger_than_a_chunk_goes_whole(tmp_path: Path) -> None:
    writer = BackgroundWriter(chunk_bytes=8, queued=1)
    handle = (tmp_path / "big.jsonl").open("wb")
    writer.write(handle, b"0123456789" * 1000)
    writer.write(handle, b"tail")
    writer.close()

    assert (tmp_path / "big.jsonl").read_bytes() == b"0123456789" * 1000 + b"tail"


def test_a_failed_write_is_raised_on_the_callers_thread_naming_the_file() -> None:
    writer = BackgroundWriter(chunk_bytes=1, queued=1)
    full = Path("/dev/full").open("wb")  # every write fails: no space left on device

    def write_then_close() -> None:
        for _ in range(1000):  # the thread fails on the first chunk; a later call reports it
            writer.write(full, b"line\n")
        writer.close()

    with pytest.raises(WriteFailedError, match=r"^writing /dev/full failed: "):
        write_then_close()
    with pytest.raises(WriteFailedError, match=r"^writing /dev/full failed: "):
        writer.close()  # closing after a failure still says so, and closes the file
    assert full.closed


def test_close_is_idempotent(tmp_path: Path) -> None:
    writer = BackgroundWriter()
    handle = (tmp_path / "once.jsonl").open("wb")
    writer.write(handle, b"one\n")
    writer.close()
    writer.close()

    assert (tmp_path / "once.jsonl").read_bytes() == b"one\n"
