"""The local stack's servers require generated passwords, kept private; children get a minimal env."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
import redis

from alpha_panda.localstack import UNPRIVILEGED_USER, LocalStack
from connectors.errors import redact_url
from connectors.localstack import KAFKA, POSTGRES, REDIS

pytestmark = pytest.mark.integration

CANARY = "sekret-CANARY-local"


@pytest.fixture
def data_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="alpha-panda-safety-")) / "state"
    yield path
    LocalStack(path).down()
    shutil.rmtree(path.parent, ignore_errors=True)


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}@{parts.hostname}:{parts.port}"))


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode(errors="replace").split("=", 1) for item in raw if b"=" in item)


def test_servers_require_the_generated_passwords(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTGRES_URL", f"postgresql://app:{CANARY}@elsewhere/db")
    monkeypatch.setenv("KITE_API_KEY", CANARY)
    stack = LocalStack(data_dir)
    urls = stack.up()

    # Passwords: generated, 0600, in a private directory.
    secrets = json.loads(stack.secrets_file.read_text())
    assert set(secrets) == {REDIS, POSTGRES}
    assert all(len(value) >= 24 for value in secrets.values())
    assert stat.S_IMODE(stack.secrets_file.stat().st_mode) == 0o600
    mode = stat.S_IMODE(data_dir.stat().st_mode)
    if os.geteuid() == 0:  # Postgres runs as nobody: only its group may pass through
        assert mode == 0o710
        assert data_dir.stat().st_gid == pwd.getpwnam(UNPRIVILEGED_USER).pw_gid
    else:
        assert mode == 0o700
    for sub in ("logs", "run", "redis"):
        assert stat.S_IMODE((data_dir / sub).stat().st_mode) == 0o700, sub

    # The URLs handed out carry the passwords and work.
    assert urlsplit(urls.redis).password == secrets[REDIS]
    assert urlsplit(urls.postgres).password == secrets[POSTGRES]
    assert LocalStack(data_dir).urls == urls
    redis.Redis.from_url(urls.redis).ping()
    with psycopg.connect(urls.postgres) as conn:
        conn.execute("SELECT 1")

    # Without them, or with a wrong one, both servers refuse.
    with pytest.raises(redis.AuthenticationError):
        redis.Redis.from_url(_without_password(urls.redis)).ping()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(_without_password(urls.postgres), connect_timeout=5)
    wrong = urls.postgres.replace(secrets[POSTGRES], "not-the-password")
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(wrong, connect_timeout=5)
    hba = (data_dir / "postgres" / "data" / "pg_hba.conf").read_text()
    rules = [line.split() for line in hba.splitlines() if line.strip() and not line.startswith("#")]
    assert rules and all(rule[-1] == "scram-sha-256" for rule in rules)

    # No password on a command line, in stack.json, pid files or status.
    for row in stack.status():
        assert row.pid is not None
        cmdline = Path(f"/proc/{row.pid}/cmdline").read_bytes().decode(errors="replace")
        assert not any(value in cmdline for value in secrets.values()), row.name
        assert row.url == redact_url(getattr(urls, row.name)), row.name
    recorded = [stack.state_file.read_text(), *(p.read_text() for p in (data_dir / "run").iterdir())]
    assert not any(value in text for value in secrets.values() for text in recorded)

    # Servers inherit none of the caller's credentials.
    for row in stack.status():
        env = _environ(row.pid or 0)
        assert "POSTGRES_URL" not in env, row.name
        assert CANARY not in json.dumps(env), row.name

    # A restart keeps the passwords; a later instance hands out the same URLs.
    assert stack.restart_server(REDIS) == urls.redis
    assert stack.restart_server(POSTGRES) == urls.postgres
    stack.down()
    assert LocalStack(data_dir).up() == urls


def test_child_processes_get_only_the_variables_named(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KITE_API_KEY", CANARY)
    monkeypatch.setenv("UNRELATED_TOKEN", CANARY)
    stack = LocalStack(data_dir)
    script = "import json, os, time; print(json.dumps(dict(os.environ)), flush=True); time.sleep(30)"
    plain = stack.start_process("plain", [sys.executable, "-c", script], {"GIVEN": "yes"})
    named = stack.start_process("named", [sys.executable, "-c", script], inherit=["KITE_API_KEY"])
    time.sleep(0.5)
    plain_env, named_env = _environ(plain.pid), _environ(named.pid)
    stack.down()
    assert plain_env["GIVEN"] == "yes"
    assert plain_env["PATH"] == os.environ["PATH"]
    assert "KITE_API_KEY" not in plain_env
    assert "UNRELATED_TOKEN" not in plain_env
    assert named_env["KITE_API_KEY"] == CANARY
    assert "UNRELATED_TOKEN" not in named_env


def test_chosen_passwords_with_url_special_characters_work(data_dir: Path) -> None:
    data_dir.mkdir(parents=True)
    chosen = {REDIS: "r%/?@:#" + CANARY, POSTGRES: "p%/?@:' " + CANARY}
    (data_dir / "secrets.json").write_text(json.dumps(chosen))
    stack = LocalStack(data_dir)
    urls = stack.up()
    redis.Redis.from_url(urls.redis).ping()
    with psycopg.connect(urls.postgres) as conn:
        conn.execute("SELECT 1")
    assert stat.S_IMODE(stack.secrets_file.stat().st_mode) == 0o600  # tightened from the umask
    for name in (KAFKA, REDIS, POSTGRES):
        assert CANARY not in redact_url(getattr(urls, name))


def test_external_urls_are_kept_private_for_later_commands(
    data_dir: Path, kafka_bootstrap: str, redis_url: str, postgres_url: str
) -> None:
    stack = LocalStack(data_dir)
    urls = stack.up(kafka_url=kafka_bootstrap, redis_url=redis_url, postgres_url=postgres_url)
    assert LocalStack(data_dir).urls == urls  # a later command gets the working URLs
    redis.Redis.from_url(LocalStack(data_dir).urls.redis).ping()  # type: ignore[union-attr]
    assert stat.S_IMODE(stack.secrets_file.stat().st_mode) == 0o600
    state = stack.state_file.read_text()
    for url in (redis_url, postgres_url):
        password = urlsplit(url).password
        assert password and password not in state


def test_up_prints_no_password(data_dir: Path) -> None:
    from typer.testing import CliRunner

    from alpha_panda import orchestration
    from alpha_panda.cli import app

    stack = LocalStack(data_dir)
    try:
        result = CliRunner().invoke(app, ["up", "--data-dir", str(data_dir)])
        assert result.exit_code == 0, result.output
        secrets = json.loads(stack.secrets_file.read_text())
        assert "redis://:***@127.0.0.1:" in result.output
        assert not any(value in result.output for value in secrets.values())
    finally:
        orchestration.stop_dataflows(stack)
