"""Kafka security settings reach every client; /metrics listens on loopback unless told otherwise."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import KafkaException

from alpha_panda import orchestration
from alpha_panda.localstack import free_port
from connectors.dlq import DeadLetterProducer
from connectors.errors import KafkaConnectorError, TopicAdminError
from connectors.kafka.admin import create_topics, list_topics
from connectors.kafka.config import use_client_security
from connectors.kafka.records import consume_all, produce
from connectors.kafka.sink import kafka_sink
from connectors.kafka.source import kafka_source
from connectors.probes import probe_kafka
from dataflows import live
from dataflows.metrics import serve_metrics
from dataflows.settings import Settings

pytestmark = pytest.mark.integration

CANARY = "sekret-CANARY-kafka"
# A SASL mechanism no client accepts: every client that receives the settings
# fails as it is built, without a network round trip.
REFUSED = {
    "security.protocol": "SASL_PLAINTEXT",
    "sasl.mechanism": "NOT-A-MECHANISM",
    "sasl.username": "app",
    "sasl.password": CANARY,
}


@pytest.fixture
def refused_security() -> Iterator[None]:
    use_client_security(REFUSED)
    yield
    use_client_security({})


def _every_client(bootstrap: str, topic: str) -> dict[str, object]:
    """Build (and use) each kind of client the project makes; return what each raised."""

    def source_consumer() -> None:
        source = kafka_source(bootstrap, [topic], tail=False)
        source.build_part("in", f"0-{topic}", None).close()

    attempts = {
        "produce": lambda: produce(bootstrap, topic, [(b"k", b"v")], timeout_s=5),
        "consume_all": lambda: consume_all(bootstrap, topic, 5),
        "list_topics": lambda: list_topics(bootstrap, timeout_s=5),
        "create_topics": lambda: create_topics(bootstrap, [topic], 1, 60_000, timeout_s=5),
        "sink": lambda: kafka_sink(bootstrap).build("out", 0, 1).close(),
        "source_partitions": lambda: kafka_source(bootstrap, [topic]).list_parts(),
        "source_consumer": source_consumer,
        "dead_letters": lambda: DeadLetterProducer(bootstrap).send([(topic, b"k", b"v", None, -1)]),
        "probe": lambda: probe_kafka(bootstrap),
        "status_offsets": lambda: orchestration.end_offsets(bootstrap, [topic], timeout_s=5),
    }
    outcome: dict[str, object] = {}
    for name, attempt in attempts.items():
        try:
            attempt()
        except Exception as err:  # recorded and asserted below
            outcome[name] = err
        else:
            outcome[name] = None
    return outcome


def test_security_settings_reach_every_client(
    kafka_bootstrap: str, unique: str, refused_security: None
) -> None:
    topic = f"security-{unique}"
    refused = _every_client(kafka_bootstrap, topic)
    assert all(err is not None for err in refused.values()), [n for n, e in refused.items() if e is None]
    assert isinstance(refused["list_topics"], TopicAdminError)
    assert all(CANARY not in str(err) for err in refused.values())

    use_client_security({"security.protocol": "PLAINTEXT"})  # the broker's own: everything works
    create_topics(kafka_bootstrap, [topic], 1, 60_000)
    working = _every_client(kafka_bootstrap, topic)
    assert {name: err for name, err in working.items() if err is not None} == {}
    assert [r.value for r in consume_all(kafka_bootstrap, topic)] == [b"v", b"v"]


def test_only_security_settings_are_accepted() -> None:
    with pytest.raises(KafkaConnectorError, match=r"\['bootstrap.servers'\] are not Kafka security settings"):
        use_client_security({"bootstrap.servers": "elsewhere:9092"})


def test_settings_name_the_security_properties_and_hide_the_secrets() -> None:
    settings = Settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="app",
        kafka_sasl_password=CANARY,
        kafka_ssl_ca_location="/etc/ca.pem",
        kafka_ssl_key_password=CANARY + "-key",
    )
    assert settings.kafka_security() == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "app",
        "sasl.password": CANARY,
        "ssl.ca.location": "/etc/ca.pem",
        "ssl.key.password": CANARY + "-key",
    }
    assert CANARY not in repr(settings)
    assert Settings().kafka_security() == {}


def test_a_live_flow_start_applies_the_settings(
    kafka_bootstrap: str, redis_url: str, postgres_url: str, unique: str
) -> None:
    settings = Settings(
        kafka_bootstrap_servers=kafka_bootstrap,
        redis_url=redis_url,
        postgres_url=postgres_url,
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="NOT-A-MECHANISM",
    )
    try:
        live.start(settings)
        with pytest.raises(KafkaException):
            produce(kafka_bootstrap, f"security-{unique}", [(b"k", b"v")], timeout_s=5)
    finally:
        use_client_security({})


def test_the_cli_applies_the_settings(kafka_bootstrap: str, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "REDIS_URL": "redis://127.0.0.1:1/0",
        "POSTGRES_URL": "postgresql://app@127.0.0.1:1/db",
        "DATA_DIR": str(tmp_path),
    }
    argv = [sys.executable, "-m", "alpha_panda.cli", "dlq", "list", "--topic", "paper.orders.filled.dlq"]
    secured = {
        **env,
        "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "KAFKA_SASL_MECHANISM": "NOT-A-MECHANISM",
        "KAFKA_SASL_PASSWORD": CANARY,
    }
    refused = subprocess.run(argv, env=secured, capture_output=True, text=True, timeout=60, check=False)
    assert refused.returncode == 2
    assert f"list_topics: cannot list topics on {kafka_bootstrap}" in refused.stderr
    assert CANARY not in refused.stdout + refused.stderr
    create_topics(kafka_bootstrap, ["paper.orders.filled.dlq"], 1, 60_000)
    plain = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert plain.returncode == 0, plain.stderr


def listening_addresses(port: int) -> set[str]:
    """Local addresses of sockets listening on ``port`` (from /proc/net/tcp, IPv4)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, port_hex = local.split(":")
        if state == "0A" and int(port_hex, 16) == port:
            found.add(".".join(str(int(address[i : i + 2], 16)) for i in (6, 4, 2, 0)))
    return found


def test_metrics_listen_on_loopback_by_default() -> None:
    assert Settings().metrics_host == "127.0.0.1"
    port = free_port()
    serve_metrics(port)
    assert listening_addresses(port) == {"127.0.0.1"}
    chosen = free_port()
    serve_metrics(chosen, "0.0.0.0")  # noqa: S104 - the explicit opt-in under test
    assert listening_addresses(chosen) == {"0.0.0.0"}  # noqa: S104
