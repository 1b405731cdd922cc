"""Real servers for the integration and reliability tests (shared by every test directory).

``KAFKA_BOOTSTRAP_SERVERS``, ``REDIS_URL`` and ``POSTGRES_URL`` point the
tests at external servers; whichever is unset is served by a local stack
(Tansu, redis-server, Postgres from PyPI wheels) started once per session
and stopped at its end. Tests never delete or truncate shared data: they
use unique ids and topic names, so pointing them at a shared server is safe.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from alpha_panda.localstack import LocalStack, ephemeral_servers
from connectors.localstack import StackUrls
from connectors.postgres import apply_migrations


@pytest.fixture(scope="session")
def _session_stack() -> Iterator[StackUrls]:
    # Not pytest's tmp_path: its root is private to root, and Postgres runs
    # as an unprivileged user when the tests run as root.
    data_dir = Path(tempfile.mkdtemp(prefix="alpha-panda-it-"))
    try:
        with ephemeral_servers(data_dir) as stack:
            assert stack.urls is not None
            yield stack.urls
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def _external_or_local(request: pytest.FixtureRequest, env_var: str, field: str) -> str:
    external = os.environ.get(env_var)
    if external:
        return external
    urls: StackUrls = request.getfixturevalue("_session_stack")
    return str(getattr(urls, field))


@pytest.fixture(scope="session")
def kafka_bootstrap(request: pytest.FixtureRequest) -> str:
    return _external_or_local(request, "KAFKA_BOOTSTRAP_SERVERS", "kafka")


@pytest.fixture(scope="session")
def redis_url(request: pytest.FixtureRequest) -> str:
    return _external_or_local(request, "REDIS_URL", "redis")


@pytest.fixture(scope="session")
def postgres_url(request: pytest.FixtureRequest) -> str:
    return _external_or_local(request, "POSTGRES_URL", "postgres")


@pytest.fixture(scope="session")
def migrated_postgres(postgres_url: str) -> str:
    apply_migrations(postgres_url)
    return postgres_url


@pytest.fixture
def unique() -> str:
    """A short id that no other test run uses (for strategy ids, order ids, topics)."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def own_stack() -> Iterator[LocalStack]:
    """A private local stack that a test may kill and restart (never the shared one)."""
    data_dir = Path(tempfile.mkdtemp(prefix="alpha-panda-own-"))
    try:
        with ephemeral_servers(data_dir) as stack:
            yield stack
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
