"""``alpha-panda reconcile``: the ledger, the fill topics and Redis portfolios, account by account.

Three stores hold each account's trading: the ``<broker>.orders.filled``
topic (the fill events, in the order the account applied them), the
Postgres ledger (``fills``, written from those events) and the Redis
portfolio (``<broker>:portfolio:<strategy_id>``, the latest snapshot). For
every account (broker, strategy) that has a fill anywhere, or a Redis
portfolio of a configured strategy, :func:`reconcile` reports:

- ``ledger_missing``: a fill on the topic with no ledger row;
- ``topic_missing``: a ledger fill not on the topic (e.g. past retention);
- ``fill_mismatch``: the same order id with different side, quantity,
  price or fees;
- ``redis_missing``: an account with fills but no Redis portfolio;
- ``redis_stale``: a Redis portfolio whose cash, fees, realized P&L or
  positions (quantity, average price, realized P&L per instrument) differ
  from the book rebuilt from the fills (and the positions adopted from the
  broker by ``reconcile --broker zerodha --adopt``, Postgres
  ``position_adjustments``, each after the fills dated before it).

Marks (``last_price``, unrealized P&L, total value) are not compared: a live
flow re-marks at most once per mark interval, so they may trail the latest
tick. :func:`repair` inserts missing ledger rows from the topic's events
(``ON CONFLICT DO NOTHING``), then writes every missing or stale portfolio
rebuilt from the fills and marked to the latest price of each held
instrument among the last ``ticks_tail`` messages of each ``market.ticks``
partition (else its last fill price).

Redis keys of strategies that are neither configured nor in the ledger or
topics are not examined. This module is the whole command (:func:`register`
adds it to the CLI), so other reconcilers can be added beside it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import msgspec
import orjson
from confluent_kafka import Consumer, TopicPartition

from connectors.adjustments import Adjustment, read_adjustments
from connectors.kafka.admin import list_topics
from connectors.kafka.config import consumer_config
from connectors.kafka.records import consume_all
from connectors.postgres import ledger_batch, ledger_fills, load_strategies, write_ledger
from connectors.redis_portfolio import portfolio_key, read_portfolios, redis_client
from operators.portfolio import Portfolio, PortfolioConfig
from schemas.codec import decode_as
from schemas.envelope import FilledEnvelope, Outbound
from schemas.errors import AlphaPandaError, DecodeError
from schemas.events import PnlSnapshot
from schemas.topics import MARKET_TICKS, ORDERS_FILLED, broker_topic

TOLERANCE: Final = 1e-6
"""Relative tolerance of money comparisons (floats stored, Decimal computed)."""
EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_json: Final = msgspec.json.Encoder()


class ReconcileError(AlphaPandaError):
    """Reconcile could not read or repair a store."""


@dataclass(frozen=True)
class Fill:
    """What the books need of one fill, from the topic or the ledger."""

    order_id: str
    strategy_id: str
    instrument_token: int
    side: str
    quantity: int
    fill_price: float
    fees: float
    timestamp: datetime

    def differs(self, other: Fill) -> list[str]:
        """Fields in which ``other`` records this order differently."""
        found = [
            name
            for name in ("strategy_id", "instrument_token", "side", "quantity")
            if getattr(self, name) != getattr(other, name)
        ]
        found += [
            name for name in ("fill_price", "fees") if not _close(getattr(self, name), getattr(other, name))
        ]
        return found


@dataclass(frozen=True)
class Difference:
    """One disagreement between stores about one account."""

    broker: str
    strategy_id: str
    kind: str
    detail: str
    order_id: str | None = None


@dataclass
class Account:
    """Everything reconcile saw of one account; ``rebuilt`` is the book from its fills."""

    broker: str
    strategy_id: str
    topic_fills: dict[str, Fill] = field(default_factory=dict)
    topic_events: dict[str, FilledEnvelope] = field(default_factory=dict)
    ledger_fills: dict[str, Fill] = field(default_factory=dict)
    redis: dict[str, Any] | None = None
    rebuilt: PnlSnapshot | None = None
    differences: list[Difference] = field(default_factory=list)
    adjustments: list[Adjustment] = field(default_factory=list)
    """Positions adopted from the broker (``reconcile --broker zerodha --adopt``), oldest first."""


@dataclass
class ReconcileReport:
    """The accounts examined, their differences, and topic messages that were not fills."""

    accounts: list[Account]
    undecodable: dict[str, int] = field(default_factory=dict)

    @property
    def differences(self) -> list[Difference]:
        """Every difference, account by account."""
        return [d for account in self.accounts for d in account.differences]


@dataclass(frozen=True)
class RepairResult:
    """What :func:`repair` wrote."""

    ledger_rows: int
    portfolios: int


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=TOLERANCE, abs_tol=TOLERANCE)


def _topic_fills(bootstrap: str, broker: str, report: ReconcileReport) -> list[tuple[FilledEnvelope, Fill]]:
    topic = broker_topic(broker, ORDERS_FILLED)
    if topic not in list_topics(bootstrap):
        return []
    out = []
    for record in consume_all(bootstrap, topic, 60.0):
        try:
            envelope = decode_as(record.value or b"", topic, FilledEnvelope)
        except DecodeError:
            envelope = None
        if not isinstance(envelope, FilledEnvelope):
            report.undecodable[topic] = report.undecodable.get(topic, 0) + 1
            continue
        data = envelope.data
        fill = Fill(
            data.order_id, data.strategy_id, int(data.instrument_token), data.side, int(data.quantity),
            float(data.fill_price), float(data.fees), data.timestamp,
        )  # fmt: skip
        out.append((envelope, fill))
    return out


def _ledger_fill(row: Mapping[str, Any]) -> Fill:
    return Fill(
        str(row["order_id"]), str(row["strategy_id"]), int(row["instrument_token"]), str(row["side"]),
        int(row["quantity"]), float(row["fill_price"]), float(row["fees"]), row["filled_at"],
    )  # fmt: skip


def latest_prices(bootstrap: str, tail: int, timeout_s: float = 10.0) -> dict[int, tuple[float, datetime]]:
    """The latest valid tick of each instrument among the last ``tail`` messages per partition.

    Out: ``{instrument_token: (last_price, exchange time)}``; messages that
    are not ticks with a positive finite price are ignored.
    """
    if MARKET_TICKS not in list_topics(bootstrap):
        return {}
    consumer = Consumer(consumer_config(bootstrap, eof=True))
    latest: dict[int, tuple[float, datetime]] = {}
    try:
        metadata = consumer.list_topics(MARKET_TICKS, timeout=timeout_s).topics[MARKET_TICKS]
        starts = []
        for partition in sorted(metadata.partitions):
            low, high = consumer.get_watermark_offsets(
                TopicPartition(MARKET_TICKS, partition), timeout=timeout_s
            )
            starts.append(TopicPartition(MARKET_TICKS, partition, max(low, high - tail)))
        consumer.assign(starts)
        pending = {tp.partition for tp in starts}
        deadline = time.monotonic() + timeout_s
        while pending and time.monotonic() < deadline:
            for message in consumer.consume(1000, 0.2):
                if message.error() is not None:
                    pending.discard(message.partition())
                    continue
                tick = _tick(message.value() or b"")
                if tick is not None:
                    latest[tick[0]] = (tick[1], tick[2])
    finally:
        consumer.close()
    return latest


def _tick(raw: bytes) -> tuple[int, float, datetime] | None:
    try:
        data = orjson.loads(raw)["data"]
        token, price = int(data["instrument_token"]), float(data["last_price"])
        when = datetime.fromisoformat(str(data["timestamp"]))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
    if token <= 0 or not math.isfinite(price) or price <= 0:
        return None
    return token, price, when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _ordered(account: Account) -> list[Fill]:
    """The account's fills in the order it applied them: topic order, ledger-only ones by time."""
    topic = list(account.topic_fills.values())
    extra = sorted(
        (f for oid, f in account.ledger_fills.items() if oid not in account.topic_fills),
        key=lambda f: (f.timestamp, f.order_id),
    )
    merged: list[Fill] = []
    for fill in topic:
        while extra and extra[0].timestamp < fill.timestamp:
            merged.append(extra.pop(0))
        merged.append(fill)
    return merged + extra


def rebuild(
    account: Account, config: PortfolioConfig, prices: Mapping[int, tuple[float, datetime]]
) -> PnlSnapshot:
    """The account's snapshot from its fills and adopted positions, marked to ``prices`` (the latest ticks).

    An adjustment applies after the fills dated before it (``adopted_at``).
    """
    portfolio = Portfolio(config)
    state = portfolio.new_state()
    when = EPOCH
    pending = list(account.adjustments)
    for fill in _ordered(account):
        while pending and pending[0].adopted_at <= fill.timestamp:
            adjustment = pending.pop(0)
            portfolio.adopt(state, adjustment.instrument_token, adjustment.quantity, adjustment.average_price)
        # Portfolio.on_fill reads only these attributes of an OrderFilled.
        portfolio.on_fill(state, fill)  # type: ignore[arg-type]
        when = max(when, fill.timestamp)
    for adjustment in pending:
        portfolio.adopt(state, adjustment.instrument_token, adjustment.quantity, adjustment.average_price)
    for token, holding in state.holdings.items():
        if holding.quantity and token in prices:
            price, at = prices[token]
            portfolio.on_mark(state, token, price)
            when = max(when, at)
    return portfolio.snapshot(state, strategy_id=account.strategy_id, broker=account.broker, timestamp=when)


def _stale_fields(stored: Mapping[str, Any], rebuilt: PnlSnapshot) -> list[str]:
    found = [
        name
        for name in ("cash", "fees_paid", "realized_pnl")
        if not isinstance(stored.get(name), int | float)
        or not _close(float(stored[name]), getattr(rebuilt, name))
    ]
    positions = stored.get("positions")
    positions = positions if isinstance(positions, dict) else {}
    for token in sorted(set(positions) | set(rebuilt.positions)):
        mine, theirs = rebuilt.positions.get(token), positions.get(token)
        if mine is None or not isinstance(theirs, dict):
            found.append(f"position {token}")
            continue
        if theirs.get("quantity") != mine.quantity:
            found.append(f"position {token} quantity {theirs.get('quantity')} != {mine.quantity}")
        for name in ("average_price", "realized_pnl"):
            value = theirs.get(name)
            if not isinstance(value, int | float) or not _close(float(value), getattr(mine, name)):
                found.append(f"position {token} {name}")
    return found


def _compare(account: Account) -> None:
    def note(kind: str, detail: str, order_id: str | None = None) -> None:
        account.differences.append(Difference(account.broker, account.strategy_id, kind, detail, order_id))

    for order_id in sorted(set(account.topic_fills) - set(account.ledger_fills)):
        note("ledger_missing", f"fill {order_id} is on the topic but not in the ledger", order_id)
    for order_id in sorted(set(account.ledger_fills) - set(account.topic_fills)):
        note("topic_missing", f"fill {order_id} is in the ledger but not on the topic", order_id)
    for order_id in sorted(set(account.topic_fills) & set(account.ledger_fills)):
        fields = account.topic_fills[order_id].differs(account.ledger_fills[order_id])
        if fields:
            note("fill_mismatch", f"fill {order_id}: ledger differs in {', '.join(fields)}", order_id)
    has_fills = bool(account.topic_fills or account.ledger_fills)
    if account.redis is None:
        if has_fills:
            note("redis_missing", "no Redis portfolio")
        return
    assert account.rebuilt is not None  # noqa: S101 - set for every account before comparing
    stale = _stale_fields(account.redis, account.rebuilt)
    if stale:
        note("redis_stale", f"Redis portfolio differs from the fills in {', '.join(stale)}")


class _Accounts:
    """Accounts by (broker, strategy), created on first sight; None for unwanted strategies."""

    def __init__(self, wanted: set[str] | None) -> None:
        self.wanted = wanted
        self.by_key: dict[tuple[str, str], Account] = {}

    def get(self, broker: str, strategy_id: str) -> Account | None:
        if self.wanted is not None and strategy_id not in self.wanted:
            return None
        key = (broker, strategy_id)
        if key not in self.by_key:
            self.by_key[key] = Account(broker, strategy_id)
        return self.by_key[key]

    def strategies(self, broker: str) -> set[str]:
        return {s for (b, s) in self.by_key if b == broker}


def reconcile(  # one keyword per store and filter
    *,
    kafka: str,
    redis_url: str,
    postgres_url: str,
    brokers: Sequence[str],
    config: PortfolioConfig,
    strategies: Iterable[str] | None = None,
    ticks_tail: int = 10_000,
) -> ReconcileReport:
    """Compare the three stores for every account of ``brokers`` (or only ``strategies``).

    Raises:
        ConnectorError: a store could not be read (names which, passwords hidden).
    """
    accounts = _Accounts(set(strategies) if strategies else None)
    configured = {str(row["id"]) for row in load_strategies(postgres_url)}
    report = ReconcileReport([])
    for broker in brokers:
        for envelope, fill in _topic_fills(kafka, broker, report):
            found = accounts.get(broker, fill.strategy_id)
            if found is not None and fill.order_id not in found.topic_fills:  # redelivered: first wins
                found.topic_fills[fill.order_id] = fill
                found.topic_events[fill.order_id] = envelope
        for row in ledger_fills(postgres_url, broker):
            found = accounts.get(broker, str(row["strategy_id"]))
            if found is not None:
                found.ledger_fills[str(row["order_id"])] = _ledger_fill(row)
        for adjustment in read_adjustments(postgres_url, broker):
            found = accounts.get(broker, adjustment.strategy_id)
            if found is not None:
                found.adjustments.append(adjustment)
        known = configured | accounts.strategies(broker)
        for strategy_id, snapshot in read_portfolios(redis_url, broker).items():
            found = accounts.get(broker, strategy_id) if strategy_id in known else None
            if found is not None:
                found.redis = snapshot
    prices = latest_prices(kafka, ticks_tail) if accounts.by_key else {}
    for key in sorted(accounts.by_key):
        item = accounts.by_key[key]
        item.rebuilt = rebuild(item, config, prices)
        _compare(item)
        report.accounts.append(item)
    return report


def repair(report: ReconcileReport, *, redis_url: str, postgres_url: str) -> RepairResult:
    """Restore missing ledger rows from the topic, then missing or stale Redis portfolios.

    Ledger rows are inserted with ``ON CONFLICT DO NOTHING`` (the same rows the
    ledger sink writes); portfolios are the rebuilt snapshots of ``report``.

    Raises:
        ReconcileError: Postgres or Redis refused the writes.
    """
    import psycopg
    import redis

    from connectors.errors import describe_error, redact_url

    events = [
        Outbound(broker_topic(a.broker, ORDERS_FILLED), a.strategy_id, a.topic_events[d.order_id])
        for a in report.accounts
        for d in a.differences
        if d.kind == "ledger_missing" and d.order_id is not None
    ]
    if events:
        try:
            with psycopg.connect(postgres_url, connect_timeout=10) as conn:
                write_ledger(conn, ledger_batch(events))
        except psycopg.Error as err:
            where, reason = redact_url(postgres_url), describe_error(err, postgres_url)
            msg = f"reconcile: restoring the ledger in {where} failed: {reason}"
            raise ReconcileError(msg) from None
    rewrite = [
        a
        for a in report.accounts
        if a.rebuilt is not None and any(d.kind in ("redis_missing", "redis_stale") for d in a.differences)
    ]
    if rewrite:
        client = redis_client(redis_url, retries=3)
        try:
            pipe = client.pipeline(transaction=False)
            for item in rewrite:
                pipe.set(portfolio_key(item.broker, item.strategy_id), _json.encode(item.rebuilt))
            pipe.execute()
        except redis.RedisError as err:
            where, reason = redact_url(redis_url), describe_error(err, redis_url)
            msg = f"reconcile: writing portfolios to {where} failed: {reason}"
            raise ReconcileError(msg) from None
        finally:
            client.close()
    return RepairResult(len(events), len(rewrite))


# --- the command ----------------------------------------------------------------------


def _print(console: Any, report: ReconcileReport, title: str) -> None:
    from rich.table import Table

    fills = sum(len(a.topic_fills) for a in report.accounts)
    console.print(f"{title}: {len(report.accounts):,} account(s), {fills:,} fill(s) on the topics")
    for topic, count in sorted(report.undecodable.items()):
        console.print(f"  {topic}: {count:,} message(s) that are not fills, ignored")
    if not report.differences:
        console.print("  no differences: ledger, topics and Redis agree")
        return
    table = Table(title=f"{title}: {len(report.differences):,} difference(s)")
    for name in ("broker", "strategy", "kind", "detail"):
        table.add_column(name, overflow="fold")
    for d in report.differences:
        table.add_row(d.broker, d.strategy_id, d.kind, d.detail)
    console.print(table)
