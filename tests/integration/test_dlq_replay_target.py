"""`dlq replay` republishes a record only to the topic its DLQ's name implies."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from alpha_panda.dlq import plan_replay, replay_dlq
from connectors.dlq import DeadLetterProducer, read_dead_letters
from connectors.kafka.admin import create_topics, list_topics
from connectors.kafka.records import consume_all
from schemas.codec import dead_letter, encode

pytestmark = pytest.mark.integration

AT = datetime(2024, 1, 2, 10, 0, tzinfo=UTC)


def _letter(topic: str, value: bytes) -> bytes:
    envelope = dead_letter(
        topic=topic,
        key="acct",
        value=value,
        error_type="infrastructure",
        error_class="OperationalError",
        error_message="ledger: server closed the connection",
        service_name="test",
        dlq_timestamp=AT,
        retry_count=3,
    )
    return encode(envelope)


def test_a_record_naming_another_topic_is_reported_and_skipped(kafka_bootstrap: str, unique: str) -> None:
    home = f"t{unique}.orders.filled"
    elsewhere = f"t{unique}.elsewhere"
    dlq = f"{home}.dlq"
    create_topics(kafka_bootstrap, [home, dlq], 1, 3_600_000)
    DeadLetterProducer(kafka_bootstrap).send(
        [
            (dlq, b"acct", _letter(home, b'{"genuine": 1}'), None, -1),
            (dlq, b"acct", _letter(elsewhere, b'{"forged": 1}'), None, -1),
            (dlq, b"acct", _letter("market.ticks", b'{"forged": 2}'), None, -1),
        ]
    )

    dry = replay_dlq(kafka_bootstrap, dlq, dry_run=True)
    assert dict(dry.republished) == {home: 1}
    result = replay_dlq(kafka_bootstrap, dlq)
    assert dict(result.republished) == {home: 1}
    assert dict(result.skipped) == {
        f"names topic {elsewhere!r}, not {home!r}: not replayed from this DLQ": 1,
        f"names topic 'market.ticks', not {home!r}: not replayed from this DLQ": 1,
    }
    assert [r.value for r in consume_all(kafka_bootstrap, home)] == [b'{"genuine": 1}']
    assert elsewhere not in list_topics(kafka_bootstrap)


def test_the_plan_checks_every_record_against_the_dlq_name(kafka_bootstrap: str, unique: str) -> None:
    home = f"t{unique}.pnl.snapshots"
    dlq = f"{home}.dlq"
    create_topics(kafka_bootstrap, [dlq], 1, 3_600_000)
    DeadLetterProducer(kafka_bootstrap).send(
        [(dlq, b"a", _letter(f"{home}.dlq", b"{}"), None, -1), (dlq, b"a", _letter(home, b"{}"), None, -1)]
    )
    chosen, result = plan_replay(dlq, read_dead_letters(kafka_bootstrap, dlq), limit=5)
    assert [c.envelope.data.dlq_metadata.original_topic for c in chosen] == [home]
    assert sum(result.skipped.values()) == 1
