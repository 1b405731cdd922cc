"""``alpha-panda dlq list | replay``: inspect dead-letter topics and republish what may be.

Listing groups a DLQ topic's records by original topic and error type and
says whether each group is replayable (``replay_metadata.can_replay``:
transient, infrastructure and rate-limit failures; never poison,
authentication or business ones).

Replay republishes each replayable record's original key and value to its
original topic (in the partition its account uses), with the header
:data:`connectors.dlq.REPLAY_HEADER` naming the dead letter. It is safe to
repeat: every downstream effect is idempotent (order ids derive from the
validated signal, the ledger inserts ``ON CONFLICT``, portfolios skip order
ids already applied, replayed snapshots never replace newer ones). Replay
keeps no record of its own; ``--since`` limits it to newer dead letters.
Records that are not replayable are reported as skipped, never republished.

A record is republished only to the topic its own DLQ name implies
(``paper.orders.filled.dlq`` -> ``paper.orders.filled``): one whose
``original_topic`` names any other topic (a forged or misrouted dead letter)
is reported and skipped, so replay can never be used to write to a topic of
the sender's choosing.
"""

from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from connectors.dlq import REPLAY_HEADER, DeadLetterProducer, DeadLetterRecord, Outgoing, read_dead_letters
from connectors.kafka.admin import list_topics
from schemas.codec import original_value
from schemas.envelope import as_utc
from schemas.errors import AlphaPandaError
from schemas.topics import is_dlq, original_topic


class DlqCommandError(AlphaPandaError):
    """A DLQ command was given a topic that is not a dead-letter topic, or could not run."""


@dataclass(frozen=True)
class DlqGroup:
    """Records of one DLQ topic sharing an original topic and an error type."""

    original_topic: str
    error_type: str
    replayable: bool
    count: int


@dataclass(frozen=True)
class DlqSummary:
    """What a DLQ topic holds: groups, and how many messages are not dead letters at all."""

    topic: str
    total: int
    groups: list[DlqGroup]
    unreadable: int = 0


def summarize(topic: str, records: Sequence[DeadLetterRecord]) -> DlqSummary:
    """Group ``records`` by (original topic, error type, replayable); count each group."""
    counts: Counter[tuple[str, str, bool]] = Counter()
    unreadable = 0
    for item in records:
        if item.envelope is None:
            unreadable += 1
            continue
        data = item.envelope.data
        counts[
            (data.dlq_metadata.original_topic, data.failure_info.error_type, data.replay_metadata.can_replay)
        ] += 1
    groups = [DlqGroup(t, e, r, n) for (t, e, r), n in sorted(counts.items())]
    return DlqSummary(topic, len(records), groups, unreadable)


@dataclass
class ReplayResult:
    """What a replay did (or, dry, would do): republished counts per topic, skips with reasons."""

    topic: str
    dry_run: bool
    republished: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)

    @property
    def total_republished(self) -> int:
        """Messages republished (or that would be)."""
        return sum(self.republished.values())


def _check_topic(topic: str) -> str:
    if not is_dlq(topic):
        msg = f"{topic!r} is not a dead-letter topic (expected a name ending in '.dlq')"
        raise DlqCommandError(msg)
    return original_topic(topic)


def plan_replay(
    topic: str,
    records: Sequence[DeadLetterRecord],
    *,
    limit: int | None = None,
    since: datetime | None = None,
) -> tuple[list[DeadLetterRecord], ReplayResult]:
    """Choose the records to republish; the result counts skips by reason.

    In: the DLQ's records in topic order, at most ``limit`` to replay, only
    those dead-lettered at or after ``since``. Out: (records to republish,
    a result whose ``republished`` is filled in by the caller). A record
    naming an original topic other than ``topic`` without ``.dlq`` is skipped.

    Raises:
        DlqCommandError: ``topic`` is not a DLQ topic.
    """
    result = ReplayResult(topic, dry_run=True)
    home = _check_topic(topic)
    chosen: list[DeadLetterRecord] = []
    cutoff = as_utc(since) if since is not None else None
    for item in records:
        if item.envelope is None:
            result.skipped["not a dlq_record"] += 1
            continue
        data = item.envelope.data
        named = data.dlq_metadata.original_topic
        if named != home:
            result.skipped[f"names topic {named!r:.120}, not {home!r}: not replayed from this DLQ"] += 1
        elif cutoff is not None and data.dlq_metadata.dlq_timestamp < cutoff:
            result.skipped["older than --since"] += 1
        elif not data.replay_metadata.can_replay:
            result.skipped[f"{data.failure_info.error_type}: not replayable"] += 1
        elif limit is not None and len(chosen) >= limit:
            result.skipped["beyond --limit"] += 1
        else:
            chosen.append(item)
    return chosen, result


def _partition(target: str, key: str | None, partitions: dict[str, int], given: int | None) -> int:
    """The original partition if known; else the account's partition (crc32 of the strategy id)."""
    if given is not None:
        return given
    if key is None or target not in partitions or "." not in target or target.startswith("market."):
        return -1
    return zlib.crc32(key.split(":", 1)[0].encode("utf-8")) % partitions[target]


def replay_dlq(
    bootstrap: str,
    topic: str,
    *,
    dry_run: bool = False,
    limit: int | None = None,
    since: datetime | None = None,
) -> ReplayResult:
    """Republish the replayable records of DLQ ``topic`` to their original topics.

    Raises:
        DlqCommandError: ``topic`` is not a DLQ topic.
        TopicAdminError: the topic does not exist.
        DeadLetterError: Kafka did not acknowledge a republished message.
    """
    home = _check_topic(topic)
    chosen, result = plan_replay(topic, read_dead_letters(bootstrap, topic), limit=limit, since=since)
    result.dry_run = dry_run
    partitions = list_topics(bootstrap)
    messages: list[Outgoing] = []
    for item in chosen:
        data = item.envelope.data
        target = data.dlq_metadata.original_topic
        if target != home:  # plan_replay never chooses one; checked again where it matters
            msg = f"dlq replay: refusing to republish a record of {topic!r} to {target!r}"
            raise DlqCommandError(msg)
        original = data.original_message
        headers: list[tuple[str, str | bytes | None]] = [(k, v.encode()) for k, v in original.headers.items()]
        headers.append((REPLAY_HEADER, f"{topic}:{item.record.partition}:{item.record.offset}".encode()))
        key = original.key.encode() if original.key is not None else None
        partition = _partition(target, original.key, partitions, data.dlq_metadata.original_partition)
        messages.append((target, key, original_value(original), headers, partition))
        result.republished[target] += 1
    if not dry_run and messages:
        DeadLetterProducer(bootstrap, "alpha-panda-dlq-replay").send(messages)
    return result


def list_dlq(bootstrap: str, topic: str) -> DlqSummary:
    """Summarise DLQ ``topic``.

    Raises:
        DlqCommandError: ``topic`` is not a DLQ topic.
        TopicAdminError: the topic does not exist.
    """
    _check_topic(topic)
    return summarize(topic, read_dead_letters(bootstrap, topic))
