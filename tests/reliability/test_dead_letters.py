"""One live run through start-up waits, a ledger outage, dead letters and their replay.

The scenario (run once, checked by the tests below), with credentials set to
a recognisable canary:

1. Redis and Postgres are down when the pipeline process starts: it logs
   which server is unreachable and where, backs off, and starts once each
   comes up.
2. Half the ticks trade; then Postgres goes down with a tiny retry budget
   (``RETRY_BUDGET_S=0.3``), and the rest of the ticks trade: each ledger
   batch is dead-lettered to ``<broker>.orders.<stage>.dlq`` (infrastructure,
   replayable), counted on ``/metrics``, and the flow goes on.
3. Postgres comes back; ``alpha-panda dlq list`` and ``dlq replay`` (twice)
   put the order events back and the store writer applies them: the ledger
   equals an uninterrupted run, without duplicates.

The canary is the local Redis and Postgres passwords themselves (chosen in
``secrets.json`` before the stack starts, with the characters that break
naive URL parsing), a Kafka SASL password and the broker API keys. It must
appear in no log, dead letter, CLI output, stack file, command line, or
server environment, nor on ``/metrics``.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from typer.testing import CliRunner

from alpha_panda import orchestration
from alpha_panda.cli import app
from alpha_panda.localstack import LocalStack, free_port
from connectors.errors import redact_url
from connectors.localstack import POSTGRES, REDIS
from tests.integration.live_world import World, live_world, simulated_ticks, wait_until
from tests.integration.test_kafka_security import listening_addresses
from tests.integration.test_live_pipeline import BAD, replay_reference
from tests.reliability.conftest import log_text, scrape
from tests.reliability.test_outages import ledger_duplicates

pytestmark = pytest.mark.integration

CANARY = "sekret-CANARY-123"
PASSWORDS = {"redis": f"r%/?@:{CANARY}", "postgres": f"p%/?@:{CANARY}"}
ORDER_DLQS = [f"{b}.orders.{s}.dlq" for b in ("paper", "zerodha") for s in ("submitted", "filled", "failed")]


@dataclass
class Run:
    world: World
    stack: LocalStack
    reference_fills: set
    redis_url: str
    postgres_url: str
    metrics: dict[str, float] = field(default_factory=dict)
    metrics_text: str = ""
    metrics_port: int = 0
    fills_before_replay: set = field(default_factory=set)
    dlq_counts: dict[str, int] = field(default_factory=dict)
    dead_fills: set = field(default_factory=set)
    cli: dict[str, str] = field(default_factory=dict)
    fills_after_replay: set = field(default_factory=set)
    fills_after_second_replay: set = field(default_factory=set)
    duplicates: int = -1


def _dead_fill(letter: dict[str, Any]) -> tuple[str, str, float, int]:
    import orjson

    data = orjson.loads(letter["data"]["original_message"]["value"])["data"]
    return (data["broker"], data["order_id"], float(data["fill_price"]), int(data["quantity"]))


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    import shutil
    import tempfile

    from alpha_panda.localstack import ephemeral_servers

    data_dir = Path(tempfile.mkdtemp(prefix="alpha-panda-dlq-"))
    (data_dir / "secrets.json").write_text(json.dumps(PASSWORDS))
    try:
        with ephemeral_servers(data_dir) as stack:
            urls = stack.urls
            assert urls is not None
            with live_world(urls.redis, urls.postgres) as world:
                yield _scenario(world, stack, tmp_path_factory.mktemp("dlq"))
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def _scenario(world: World, stack: LocalStack, tmp: Path) -> Run:
    rows = world.seed()
    lines = simulated_ticks(ticks=400, seed=43)
    fills, _ = replay_reference(world, rows, lines, tmp)
    result = Run(world, stack, fills, world.urls.redis, world.urls.postgres)
    port = free_port()
    env = {
        "KAFKA_SASL_PASSWORD": CANARY,  # no SASL on Tansu: set, passed to clients, never shown
        "KITE_API_KEY": CANARY,
        "KITE_ACCESS_TOKEN": CANARY,
        "ALPACA_SECRET_KEY": CANARY,
        "METRICS_PORT": str(port),
        "RETRY_BUDGET_S": "0.3",
        "RETRY_BASE_S": "0.05",
    }
    # 1. servers down at start
    stack.stop_process(REDIS)
    stack.stop_process(POSTGRES)
    orchestration.start_dataflow(world.stack, "pipeline", world.urls, env=env)
    wait_until(lambda: "Redis at" in log_text(world.stack, "pipeline"), 30, "the Redis wait line")
    stack.start_server(REDIS)
    wait_until(lambda: "PostgreSQL at" in log_text(world.stack, "pipeline"), 30, "the Postgres wait line")
    stack.start_server(POSTGRES)

    # 2. trade half, then lose Postgres for the rest
    half = len(lines) // 2
    world.produce_ticks(lines[:half] + BAD)
    wait_until(lambda: len(world.fills()) >= 10, 60, "fills before the outage")
    time.sleep(1)
    stack.stop_process(POSTGRES)
    world.produce_ticks(lines[half:])

    def all_fills_published() -> bool:
        published = len(world.topic("paper.orders.filled")) + len(world.topic("zerodha.orders.filled"))
        return published == len(fills)

    wait_until(all_fills_published, 60, "every fill on Kafka")
    previous = -1
    while (now := sum(len(world.topic(t)) for t in ORDER_DLQS)) != previous:
        previous = now
        time.sleep(1.5)
    result.metrics = scrape(port)
    result.metrics_port = port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as page:
        result.metrics_text = page.read().decode()
    stack.start_server(POSTGRES)

    result.fills_before_replay = world.fills()
    result.dlq_counts = {t: len(world.topic(t)) for t in ORDER_DLQS}
    result.dead_fills = {
        _dead_fill(m) for b in ("paper", "zerodha") for m in world.topic(f"{b}.orders.filled.dlq")
    }

    # 3. list and replay (twice: the second changes nothing)
    runner = CliRunner()
    data_dir = ["--data-dir", str(world.stack.data_dir)]
    result.cli["list"] = runner.invoke(
        app, ["dlq", "list", "--topic", "paper.orders.filled.dlq", *data_dir]
    ).output
    result.cli["dry"] = runner.invoke(
        app, ["dlq", "replay", "--topic", "paper.orders.filled.dlq", "--dry-run", *data_dir]
    ).output
    result.cli["poison"] = runner.invoke(
        app, ["dlq", "replay", "--topic", "market.ticks.dlq", *data_dir]
    ).output
    for topic in ORDER_DLQS:
        if result.dlq_counts[topic]:
            result.cli[topic] = runner.invoke(app, ["dlq", "replay", "--topic", topic, *data_dir]).output
    result.fills_after_replay = world.fills()
    for topic in ORDER_DLQS:
        if result.dlq_counts[topic]:
            runner.invoke(app, ["dlq", "replay", "--topic", topic, *data_dir])
    result.fills_after_second_replay = world.fills()
    result.duplicates = ledger_duplicates(world.urls.postgres)
    return result


def test_startup_logs_which_server_is_unreachable_and_where(run: Run) -> None:
    text = log_text(run.world.stack, "pipeline")
    assert CANARY in unquote(run.redis_url) and CANARY in unquote(run.postgres_url)
    redis_where = redact_url(run.redis_url)
    postgres_where = redact_url(run.postgres_url)
    assert "***" in redis_where and "***" in postgres_where
    assert f"Redis at {redis_where} unreachable (attempt 1), retrying in" in text
    assert f"PostgreSQL at {postgres_where} unreachable (attempt 1), retrying in" in text
    assert f"Redis at {redis_where} is reachable; starting" in text
    assert f"PostgreSQL at {postgres_where} is reachable; starting" in text
    assert run.fills_before_replay, "and then it processed"


def test_ledger_outage_dead_letters_every_unstored_order_event(run: Run) -> None:
    assert run.dead_fills, "the outage dead-lettered fills"
    assert run.fills_before_replay | run.dead_fills == run.reference_fills
    assert not run.fills_before_replay & run.dead_fills
    letter = run.world.topic("paper.orders.filled.dlq")[0]["data"]
    assert letter["failure_info"]["error_type"] == "infrastructure"
    assert letter["failure_info"]["retry_count"] >= 1
    assert letter["replay_metadata"] == {"can_replay": True, "requires_manual_review": False}
    assert letter["dlq_metadata"]["original_topic"] == "paper.orders.filled"


def test_dlq_and_retry_metrics_are_served(run: Run) -> None:
    for topic in ("paper.orders.filled", "paper.orders.submitted"):
        key = f'alpha_panda_dlq_messages_total{{broker="paper",error_type="infrastructure",topic="{topic}"}}'
        assert run.metrics.get(key) == run.dlq_counts[f"{topic}.dlq"]
    poison = 'alpha_panda_dlq_messages_total{broker="shared",error_type="poison",topic="market.ticks"}'
    assert run.metrics.get(poison) == len(BAD)
    assert run.metrics.get('alpha_panda_retries_total{error_type="infrastructure"}', 0) > 0


def test_dlq_list_and_replay_restore_the_ledger(run: Run) -> None:
    count = run.dlq_counts["paper.orders.filled.dlq"]
    assert "paper.orders.filled" in run.cli["list"]
    assert "infrastructure" in run.cli["list"]
    assert f"{count:,}" in run.cli["list"]
    assert f"would republish {count:,} to paper.orders.filled" in run.cli["dry"]
    assert f"republished {count:,} to paper.orders.filled" in run.cli["paper.orders.filled.dlq"]
    assert "republished nothing" in run.cli["poison"]
    assert f"skipped {len(BAD)}: poison: not replayable" in run.cli["poison"]
    assert run.fills_after_replay == run.reference_fills
    assert run.fills_after_second_replay == run.reference_fills
    assert run.duplicates == 0


def test_no_secret_in_logs_or_dead_letters(run: Run) -> None:
    logs = [*run.world.stack.logs_dir.glob("*.log"), *run.stack.logs_dir.glob("*.log")]
    assert logs
    for path in logs:
        assert CANARY not in path.read_text(errors="replace"), path
    for topic in [*ORDER_DLQS, "market.ticks.dlq", "paper.pnl.snapshots.dlq"]:
        for message in run.world.topic(topic):
            assert CANARY not in str(message), topic
    assert all(CANARY not in output for output in run.cli.values())


def test_no_secret_in_stack_files_command_lines_or_server_environments(run: Run) -> None:
    for stack in (run.stack, run.world.stack):
        files = [stack.state_file, *stack.run_dir.glob("*.json")]
        assert all(CANARY not in path.read_text() for path in files if path.exists())
        for row in stack.status():
            assert row.url is None or CANARY not in row.url, row.name
    status = CliRunner().invoke(app, ["status", "--data-dir", str(run.stack.data_dir)]).output
    assert "redis" in status
    assert CANARY not in status
    for row in run.stack.status():  # the servers: no password on the command line, no caller secrets
        assert row.pid is not None and row.alive, row.name
        assert CANARY not in Path(f"/proc/{row.pid}/cmdline").read_bytes().decode(errors="replace"), row.name
        environ = Path(f"/proc/{row.pid}/environ").read_bytes().decode(errors="replace")
        assert CANARY not in environ, row.name
        assert "KITE_API_KEY" not in environ, row.name


def test_metrics_are_served_on_loopback_without_secrets(run: Run) -> None:
    assert run.metrics_text
    assert CANARY not in run.metrics_text
    assert listening_addresses(run.metrics_port) == {"127.0.0.1"}
