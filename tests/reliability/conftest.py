"""Fixtures of the reliability tests: isolated worlds, on the session's servers or a private stack.

The session servers and ``own_stack`` come from ``tests/conftest.py``.
"""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from alpha_panda.localstack import LocalStack
from tests.integration.live_world import World, live_world


@pytest.fixture
def world(redis_url: str, postgres_url: str) -> Iterator[World]:
    """A world on the session's Redis and Postgres (never stopped by a test)."""
    with live_world(redis_url, postgres_url) as w:
        yield w


@pytest.fixture
def own_world(own_stack: LocalStack) -> Iterator[tuple[World, LocalStack]]:
    """A world whose Redis and Postgres belong to this test alone (it may stop them)."""
    urls = own_stack.urls
    assert urls is not None
    with live_world(urls.redis, urls.postgres) as w:
        yield w, own_stack


def scrape(port: int) -> dict[str, float]:
    """``/metrics`` of a flow as ``{'name{labels}': value}`` (samples only)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    samples = {}
    for line in text.splitlines():
        match = re.match(r"^([a-zA-Z_:][\w:]*(?:\{[^}]*\})?) (\S+)$", line)
        if match:
            samples[match.group(1)] = float(match.group(2))
    return samples


def log_text(stack: LocalStack, name: str) -> str:
    """The log of process ``name`` so far ('' if none)."""
    path = Path(stack.log_path(name))
    return path.read_text(errors="replace") if path.exists() else ""
