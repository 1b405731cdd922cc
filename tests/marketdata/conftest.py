"""Local servers for the market-data tests: an HTTP server with scripted answers, and Postgres.

``postgres_url``: ``POSTGRES_URL``, or a throwaway pgserver for the session.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from collections import defaultdict, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest


@dataclass
class Answer:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Seen:
    path: str
    query: dict[str, str]
    headers: dict[str, str]


@dataclass
class ScriptedHttp:
    """Answers per path, served in order (the last one repeats); requests recorded."""

    base_url: str = ""
    answers: dict[str, deque[Answer]] = field(default_factory=lambda: defaultdict(deque))
    seen: list[Seen] = field(default_factory=list)

    def on(self, path: str, *answers: Answer) -> None:
        self.answers[path].extend(answers)

    def next_answer(self, path: str) -> Answer:
        queue = self.answers.get(path)
        if not queue:
            return Answer(404, {"message": f"no scripted answer for {path}"})
        return queue.popleft() if len(queue) > 1 else queue[0]


@pytest.fixture
def http_server() -> Iterator[ScriptedHttp]:
    script = ScriptedHttp()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # http.server's name
            parts = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            headers = {k.lower(): v for k, v in self.headers.items()}
            script.seen.append(Seen(parts.path, query, headers))
            answer = script.next_answer(parts.path)
            if isinstance(answer.body, bytes | str):
                body = answer.body.encode() if isinstance(answer.body, str) else answer.body
            else:
                body = json.dumps(answer.body).encode()
            self.send_response(answer.status)
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    script.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield script
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    url = os.environ.get("POSTGRES_URL")
    if url:
        yield url
        return
    import pgserver

    # Not pytest's tmp_path: concurrent pytest sessions prune each other's
    # numbered base directories, and Postgres would lose its data directory.
    data_dir = Path(tempfile.mkdtemp(prefix="alpha-panda-md-pg-"))
    server = pgserver.get_server(data_dir, cleanup_mode="stop")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()
        shutil.rmtree(data_dir, ignore_errors=True)
