"""A dashboard over an isolated world: own Tansu, own database, own Redis db, seeded by real writes."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from alpha_panda.dashboard.server import RunningDashboard, start_dashboard
from connectors.redis_portfolio import redis_client
from tests.dashboard.seed import Seeded, seed_world
from tests.integration.live_world import World, live_world

ROOT = Path(__file__).parents[2]
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("ALPHA_PANDA_ARTIFACTS", ROOT / "tmp" / "artifacts"))


def redis_db(url: str, db: int) -> str:
    """The same Redis server, another logical database (the page lists every account of its db)."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{db}"))


@dataclass
class Dashboard:
    world: World
    running: RunningDashboard
    token: str
    seeded: Seeded

    @property
    def url(self) -> str:
        return self.running.url


@contextmanager
def private_world(redis_url: str, postgres_url: str) -> Iterator[World]:
    """A live world on a Redis logical database of its own choosing; its keys are deleted afterwards.

    Logical databases 1..15 keep the page's account list to this test's writes
    (the shared tests use 0); the keys carry the world's prefix, so a test that
    happens to pick the same database as another still finds only its own.
    """
    with live_world(redis_db(redis_url, 1 + uuid.uuid4().int % 15), postgres_url) as world:
        try:
            yield world
        finally:
            client = redis_client(world.urls.redis)
            try:
                for broker in ("paper", "zerodha"):
                    keys = list(client.scan_iter(match=f"{broker}:portfolio:{world.prefix}*"))
                    if keys:
                        client.delete(*keys)
            finally:
                client.close()


@pytest.fixture
def world(redis_url: str, postgres_url: str) -> Iterator[World]:
    with private_world(redis_url, postgres_url) as w:
        yield w


@pytest.fixture
def dashboard(world: World) -> Iterator[Dashboard]:
    """A running dashboard (free port) over a seeded world; the token is random per test."""
    seeded = seed_world(world.urls.kafka, world.urls.redis, world.urls.postgres, world.prefix)
    token = uuid.uuid4().hex
    settings = world.settings(dashboard_token=token, dashboard_port=0)
    running = start_dashboard(settings, world.urls, world.stack, health_every_s=1.0)
    try:
        assert running.sources.monitor.wait_ready(30), "first health check"
        yield Dashboard(world, running, token, seeded)
    finally:
        running.stop()


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's chromium, installed by scripts/install_chromium.sh when missing (never skipped)."""
    if not CHROMIUM.exists():
        subprocess.run(["bash", str(ROOT / "scripts" / "install_chromium.sh")], check=True)
    assert CHROMIUM.exists(), "scripts/install_chromium.sh did not install /usr/bin/chromium"
    return CHROMIUM


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
