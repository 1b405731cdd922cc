"""``alpha-panda up`` with live Zerodha orders configured also starts Kite's order updates."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from alpha_panda import orchestration
from alpha_panda.cli import app
from alpha_panda.localstack import LocalStack
from dataflows.settings import get_settings
from tests.integration.live_world import World, live_world, wait_until
from tests.zerodha.kite_server import FakeKite
from tests.zerodha.test_pipeline_live import kite_env

pytestmark = pytest.mark.integration


@pytest.fixture
def world(redis_url: str, postgres_url: str) -> Iterator[World]:
    with live_world(redis_url, postgres_url) as w:
        yield w


def test_up_with_live_trading_starts_and_lists_zerodha_updates(
    world: World, kite: FakeKite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {
        **kite_env(kite),
        "KAFKA_BOOTSTRAP_SERVERS": world.urls.kafka,
        "REDIS_URL": world.urls.redis,
        "POSTGRES_URL": world.urls.postgres,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    data_dir = tmp_path / "stack"
    stack = LocalStack(data_dir)
    try:
        result = CliRunner().invoke(app, ["up", "--data-dir", str(data_dir)])
        assert result.exit_code == 0, result.output
        assert "dataflows: pipeline, zerodha_updates;" in result.output
        wait_until(lambda: stack.process(orchestration.ZERODHA_UPDATES) is not None, 30, "zerodha_updates")
        assert stack.process("pipeline") is not None
    finally:
        orchestration.stop_dataflows(stack)
        get_settings.cache_clear()
