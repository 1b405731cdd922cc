"""Per-stage flow: replayed dead letters of the store sinks -> the ledger and Redis.

``python -m bytewax.run dataflows.store_writer`` (usually with
``KAFKA_TAIL=false``; ``alpha-panda dlq replay`` runs it for you). In:
``<broker>.orders.submitted|filled|failed`` and ``<broker>.pnl.snapshots``,
keeping only messages republished by ``alpha-panda dlq replay`` (they carry
the :data:`connectors.dlq.REPLAY_HEADER` header). Out: order events into the
Postgres ledger (idempotent, ``ON CONFLICT``), snapshots into Redis unless
a newer one is stored. Everything else on those topics was stored by the
flow that produced it, so this flow ignores it.
"""

from __future__ import annotations

from typing import Any

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaSourceMessage
from bytewax.dataflow import Dataflow

from connectors.dlq import REPLAY_HEADER
from connectors.kafka.source import kafka_source
from connectors.postgres import LedgerSink
from connectors.redis_portfolio import NewestSnapshotSink
from dataflows import live
from schemas.codec import decode
from schemas.envelope import FailedEnvelope, FilledEnvelope, Outbound, PnlEnvelope, SubmittedEnvelope
from schemas.errors import DecodeError
from schemas.topics import ORDERS_FAILED, ORDERS_FILLED, ORDERS_SUBMITTED, PNL_SNAPSHOTS, broker_topic

STORED_STAGES = (ORDERS_SUBMITTED, ORDERS_FILLED, ORDERS_FAILED, PNL_SNAPSHOTS)


def replayed(message: Any) -> Outbound | None:
    """The replayed message as an :class:`Outbound`; ``None`` for anything else.

    In: a Kafka source item. Out: an ``Outbound`` of its topic, key and
    decoded envelope, if it carries the replay header and decodes.
    """
    if not isinstance(message, KafkaSourceMessage):
        return None
    if not any(name == REPLAY_HEADER for name, _value in message.headers or []):
        return None
    try:
        envelope = decode(message.value or b"", message.topic or "")
    except DecodeError as err:
        live.log.warning("store_writer: skipping an undecodable replayed message: %s", err.reason)
        return None
    key = (message.key or b"").decode("utf-8", "replace")
    return Outbound(message.topic or "", key, envelope)


def build(settings: Any) -> Dataflow:
    """Build the store writer for ``settings``."""
    servers = live.start(settings)
    live.await_servers(servers, kafka=True, redis=True, postgres=True)
    flow = Dataflow("alpha_panda_store_writer")
    topics = [broker_topic(b, stage) for b in settings.active_brokers for stage in STORED_STAGES]
    messages = op.input("replayed", flow, kafka_source(servers.kafka, topics, tail=settings.kafka_tail))
    items = op.filter_map("replayed_only", messages, replayed)
    orders = op.filter(
        "orders",
        items,
        lambda o: isinstance(o.envelope, SubmittedEnvelope | FilledEnvelope | FailedEnvelope),
    )
    snapshots = op.filter("snapshots", items, lambda o: isinstance(o.envelope, PnlEnvelope))
    resilience = live.resilience(servers, settings)
    op.output("postgres_ledger", orders, LedgerSink(servers.postgres, resilience=resilience))
    op.output("redis_portfolios", snapshots, NewestSnapshotSink(servers.redis))
    return flow


__getattr__ = live.lazy_flow(__name__, build)
