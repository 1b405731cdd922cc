"""A scripted local WebSocket server: each connection runs the next script."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import ServerConnection, serve

# The test server's own DEBUG logs show the request line; keep them out of
# the client-side log assertions.
_SERVER_LOG = logging.getLogger("tests.marketdata.wsserver")
_SERVER_LOG.setLevel(logging.INFO)

Script = Callable[[ServerConnection, "Recorder"], Awaitable[None]]


@dataclass
class Recorder:
    """What the server saw: request paths and text messages, per connection."""

    paths: list[str] = field(default_factory=list)
    received: list[list[str]] = field(default_factory=list)

    async def expect(self, ws: ServerConnection, count: int) -> list[str]:
        """Receive ``count`` text messages on ``ws`` and record them."""
        got = [str(await ws.recv()) for _ in range(count)]
        self.received[-1].extend(got)
        return got


@contextlib.asynccontextmanager
async def scripted_server(
    scripts: list[Script], *, reject_status: HTTPStatus | None = None
) -> AsyncIterator[tuple[str, Recorder]]:
    """Serve on 127.0.0.1:<free port>; yield (ws url, recorder)."""
    recorder = Recorder()
    remaining = list(scripts)

    async def handler(ws: ServerConnection) -> None:
        recorder.paths.append(ws.request.path if ws.request else "")
        recorder.received.append([])
        script = remaining.pop(0) if remaining else None
        if script is None:
            await ws.wait_closed()
            return
        await script(ws, recorder)

    def process_request(connection: ServerConnection, request: Any) -> Any:
        if reject_status is not None:
            return connection.respond(reject_status, "rejected\n")
        return None

    async with serve(handler, "127.0.0.1", 0, process_request=process_request, logger=_SERVER_LOG) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}", recorder


@contextlib.contextmanager
def threaded_server(
    scripts: list[Script], *, reject_status: HTTPStatus | None = None
) -> Iterator[tuple[str, Recorder]]:
    """:func:`scripted_server` on its own thread and event loop, for synchronous callers.

    A Bytewax source drives its client on a loop of its own in the test's
    thread, so the server cannot share that thread.
    """
    started: queue.Queue[tuple[str, Recorder] | BaseException] = queue.Queue()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def main() -> None:
        try:
            async with scripted_server(scripts, reject_status=reject_status) as served:
                started.put(served)
                await stop.wait()
        except BaseException as err:  # handed to the waiting test
            started.put(err)

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    served = started.get(timeout=10)
    if isinstance(served, BaseException):
        raise served
    try:
        yield served
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=10)
        loop.close()
