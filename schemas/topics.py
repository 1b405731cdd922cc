"""Topic names and message keys, as DESIGN.md defines them."""

from __future__ import annotations

from typing import Final, Literal

Broker = Literal["paper", "zerodha"]
BROKERS: Final[tuple[Broker, ...]] = ("paper", "zerodha")
BrokerName = Literal["paper", "zerodha", "shared"]
"""Who owns a message: a broker, or ``shared`` (``market.ticks``)."""

MARKET_TICKS: Final = "market.ticks"
DLQ_SUFFIX: Final = ".dlq"

SIGNALS_RAW: Final = "signals.raw"
SIGNALS_VALIDATED: Final = "signals.validated"
SIGNALS_REJECTED: Final = "signals.rejected"
ORDERS_SUBMITTED: Final = "orders.submitted"
ORDERS_FILLED: Final = "orders.filled"
ORDERS_FAILED: Final = "orders.failed"
PNL_SNAPSHOTS: Final = "pnl.snapshots"

BROKER_STAGES: Final = (
    SIGNALS_RAW,
    SIGNALS_VALIDATED,
    SIGNALS_REJECTED,
    ORDERS_SUBMITTED,
    ORDERS_FILLED,
    ORDERS_FAILED,
    PNL_SNAPSHOTS,
)


def broker_topic(broker: str, stage: str) -> str:
    """Return the broker-namespaced topic, e.g. ``paper.signals.raw``."""
    return f"{broker}.{stage}"


def topic_broker(topic: str) -> BrokerName:
    """Return the broker that owns ``topic`` (``paper.orders.filled.dlq`` -> ``paper``), else ``shared``."""
    head = topic.split(".", 1)[0]
    return next((broker for broker in BROKERS if broker == head), "shared")


def dlq_topic(topic: str) -> str:
    """Return the dead-letter topic of ``topic``."""
    return topic + DLQ_SUFFIX


def is_dlq(topic: str) -> bool:
    """Tell whether ``topic`` is a dead-letter topic."""
    return topic.endswith(DLQ_SUFFIX)


def original_topic(dlq: str) -> str:
    """Return the topic whose dead letters ``dlq`` holds."""
    if not is_dlq(dlq):
        msg = f"{dlq!r} is not a dead-letter topic (no {DLQ_SUFFIX!r} suffix)"
        raise ValueError(msg)
    return dlq[: -len(DLQ_SUFFIX)]


def all_topics(brokers: tuple[str, ...] | list[str] = BROKERS) -> list[str]:
    """Every topic the pipeline uses for ``brokers``, dead-letter topics included."""
    names = [MARKET_TICKS]
    names += [broker_topic(b, stage) for b in brokers for stage in BROKER_STAGES]
    return names + [dlq_topic(t) for t in names]


def tick_key(instrument_token: int) -> str:
    """Key of a tick: the instrument token."""
    return str(instrument_token)


def signal_key(strategy_id: str, instrument_token: int) -> str:
    """Key of a signal: ``<strategy_id>:<instrument_token>``."""
    return f"{strategy_id}:{instrument_token}"


def account_key(strategy_id: str) -> str:
    """Key of orders and P&L: the strategy id keeps one account's events in order."""
    return strategy_id
