"""Publish market history to ``market.ticks`` without a dataflow (``alpha-panda feed``).

In: raw tick messages from a tick file (JSONL/CSV, exactly as
``alpha-panda replay`` reads them), or bars (a history file, or
``market_data`` in Postgres) turned into ticks with the close as
``last_price``. Out: on ``market.ticks``, full ``market_tick`` envelopes
keyed by instrument token, in input order; on ``market.ticks.dlq``, a
``dlq_record`` for each message the contract decoder rejects.

Every message passes :func:`schemas.codec.decode_tick`, the decoder the
pipeline and the Bytewax feed use, so ids (``tick_id``) and envelopes
equal those of ``dataflows.market_feed`` over the same history. Ticks are
paced by :class:`connectors.marketdata.backfill.EventPacer` and produced in
batches with :func:`connectors.kafka.records.produce`, each batch acknowledged
before the next, so order is kept.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

import msgspec

from connectors.files import read_tick_batches
from connectors.kafka.records import produce
from connectors.marketdata.backfill import EventPacer, Speed
from connectors.marketdata.bars import Bar
from connectors.marketdata.errors import HistoryFormatError
from connectors.marketdata.streaming import tick_message, utc_now
from connectors.parquet_ticks import is_parquet, parquet_row_count
from schemas.codec import RawMessage, decode_tick, encode, poison_letter
from schemas.envelope import TickIdentity, as_utc
from schemas.errors import DecodeError
from schemas.topics import MARKET_TICKS, dlq_topic, tick_key

FileKind = Literal["ticks", "bars"]


@dataclass
class PublishReport:
    """What a publish sent: ticks to ``market.ticks``, dead letters to its DLQ."""

    ticks: int = 0
    dead_letters: int = 0


def file_kind(path: Path) -> FileKind:
    """Tell a tick file from a bar history file by its header or first line.

    A CSV header naming ``last_price`` (or a JSONL line with ``type`` or
    ``data``) is a tick file; one naming ``close`` is a bar history.

    A Parquet file (``.parquet``, ``.pq``) is a tick file (see
    :mod:`connectors.parquet_ticks`).

    Raises:
        HistoryFormatError: neither, or the file cannot be read.
        ParquetTickFileError: a Parquet file without the tick columns.
    """
    if is_parquet(path):
        parquet_row_count(path)  # opens it and checks the columns
        return "ticks"
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            if path.suffix.lower() == ".csv":
                fields = set(next(csv.reader(handle), []))
            else:
                first = next((line for line in handle if line.strip()), "")
                try:
                    parsed = json.loads(first)
                except ValueError:
                    return "ticks"  # a malformed first line is the decoder's (and the DLQ's) business
                fields = set(parsed) if isinstance(parsed, dict) else set()
    except (OSError, UnicodeDecodeError) as err:
        msg = f"feed: cannot read {path}: {err}"
        raise HistoryFormatError(msg) from err
    if fields & {"last_price", "type", "data"}:
        return "ticks"
    if "close" in fields:
        return "bars"
    msg = (
        f"feed: {path} is neither a tick file (instrument_token,last_price,timestamp or "
        "market_tick JSON lines) nor a bar history (instrument_token,timestamp,open,high,low,close)"
    )
    raise HistoryFormatError(msg)


def tick_file_messages(path: Path) -> Iterator[RawMessage]:
    """Yield a tick file's lines as raw messages, as ``alpha-panda replay`` reads them.

    CSV rows become producer-form JSON; ``offset`` is the line number.
    """
    for batch in read_tick_batches(path, "feed"):
        yield from (batch.message(i) for i in range(len(batch.values)))


def bar_messages(bars: Iterable[Bar]) -> Iterator[RawMessage]:
    """Yield each bar as a producer-form tick message (close as ``last_price``, bar start as time)."""
    for number, bar in enumerate(bars, start=1):
        tick = bar.to_tick()
        key = tick_key(tick.instrument_token).encode()
        yield RawMessage(MARKET_TICKS, key, tick_message(tick), None, number)


def publish_ticks(  # pacing, batching and progress are the caller's to choose
    bootstrap: str,
    messages: Iterable[RawMessage],
    *,
    speed: Speed = "max",
    service: str = "market_feed.history",
    batch_size: int = 5000,
    on_progress: Callable[[int], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    now: Callable[[], datetime] = utc_now,
) -> PublishReport:
    """Decode, pace and produce ``messages`` to ``market.ticks`` (bad ones to its DLQ).

    ``speed``: event time runs ``speed`` x real time; ``"max"`` never waits.
    ``on_progress``: called with the number of messages handled since
        the previous call, after each acknowledged batch.
    ``now``: stamps dead letters (wall clock by default).

    Raises:
        KafkaDeliveryError: the broker did not acknowledge a batch.
    """
    pacer = EventPacer(speed)
    report = PublishReport()
    ticks: list[tuple[bytes, bytes]] = []
    dead: list[tuple[bytes | None, bytes]] = []

    def flush() -> None:
        if ticks:
            report.ticks += produce(bootstrap, MARKET_TICKS, ticks)
        if dead:
            report.dead_letters += produce(bootstrap, dlq_topic(MARKET_TICKS), dead)
        if on_progress is not None and (ticks or dead):
            on_progress(len(ticks) + len(dead))
        ticks.clear()
        dead.clear()

    identity = TickIdentity()  # the ids `replay` derives: content plus occurrence count
    for message in messages:
        try:
            envelope = decode_tick(message.value, source=service, derive_id=False)
        except DecodeError as err:
            letter = poison_letter(
                RawMessage(MARKET_TICKS, message.key, message.value, message.partition, message.offset),
                error_class=type(err).__name__,
                error_message=err.reason,
                service_name=service,
                dlq_timestamp=now(),
            )
            dead.append((letter.key.encode() or None, encode(letter)))
        else:
            ident = identity.id_of(envelope.data, envelope.id or None)
            envelope = msgspec.structs.replace(
                envelope, id=ident, correlation_id=envelope.correlation_id or ident, ts=as_utc(envelope.ts)
            )
            wait = pacer.delay(envelope.data.timestamp, clock())
            if wait > 0:
                flush()  # what is due goes out before the wait
                sleep(wait)
            ticks.append((envelope.key.encode(), encode(envelope)))
        if len(ticks) + len(dead) >= batch_size:
            flush()
    flush()
    return report
