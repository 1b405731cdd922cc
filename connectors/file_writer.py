"""Appending to files from a thread of its own, so that a flow never waits on the disk.

A write system call releases the GIL, so the thread's writes run on another
core while the flow's thread goes on encoding. Bytes are gathered per file
into chunks of ``chunk_bytes`` first: each hand-over costs the writer a
wait for the GIL (up to the interpreter's switch interval), which many small
writes would pay many times. At most ``queued`` chunks wait for the thread;
beyond that, the flow's thread waits too, so memory stays bounded whatever
the length of the output.

A failure on the thread (disk full, say) is raised on the caller's thread at
its next :meth:`BackgroundWriter.write` or at :meth:`BackgroundWriter.close`:
never swallowed.
"""

from __future__ import annotations

import queue
import threading
from typing import IO

CHUNK_BYTES = 1 << 20
"""Bytes gathered per file before they go to the thread."""

QUEUED_CHUNKS = 8
"""Chunks that may wait for the thread before the caller waits too."""


class WriteFailedError(OSError):
    """The writer thread could not write a chunk; nothing after it was written."""


class BackgroundWriter:
    """Append bytes to open binary files in order, each file's bytes in the order given, on one thread.

    The files stay the caller's to open; :meth:`close` writes what is
    gathered, waits for the thread and closes them.
    """

    def __init__(
        self, *, chunk_bytes: int = CHUNK_BYTES, queued: int = QUEUED_CHUNKS, name: str = "file-writer"
    ) -> None:
        self._chunk_bytes = chunk_bytes
        self._gathered: dict[IO[bytes], list[bytes]] = {}
        self._queue: queue.Queue[tuple[IO[bytes], bytes] | None] = queue.Queue(maxsize=queued)
        self._error: tuple[BaseException, str] | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def write(self, handle: IO[bytes], data: bytes) -> None:
        """Append ``data`` to ``handle`` (later: on the thread, once a chunk is full or at close)."""
        self._raise_if_failed()
        parts = self._gathered.setdefault(handle, [])
        parts.append(data)
        if sum(map(len, parts)) >= self._chunk_bytes:  # a chunk holds a few batches' bytes
            self._hand_over(handle, parts)

    def close(self) -> None:
        """Write everything gathered, stop the thread, close the files; raise the thread's failure if any."""
        if not self._closed:
            self._closed = True
            try:
                for handle, parts in self._gathered.items():
                    if parts and self._error is None:
                        self._hand_over(handle, parts)
                self._queue.put(None)
                self._thread.join()
            finally:
                for handle in self._gathered:
                    self._close(handle)
        self._raise_if_failed()

    def _close(self, handle: IO[bytes]) -> None:
        try:
            handle.close()
        except OSError as exc:  # a failed flush of what the file still buffered
            if self._error is None:
                self._error = (exc, _name(handle))

    def _hand_over(self, handle: IO[bytes], parts: list[bytes]) -> None:
        chunk = parts[0] if len(parts) == 1 else b"".join(parts)
        parts.clear()
        self._queue.put((handle, chunk))

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._error is not None:
                continue  # keep draining, so that the caller never blocks on a full queue
            handle, chunk = item
            try:
                handle.write(chunk)
                handle.flush()
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread, raised there
                self._error = (exc, _name(handle))

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            error, name = self._error
            msg = f"writing {name} failed: {error}"
            raise WriteFailedError(msg) from error


def _name(handle: IO[bytes]) -> str:
    return str(getattr(handle, "name", "a file"))
