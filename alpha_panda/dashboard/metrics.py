"""Prometheus gauges of ``alpha-panda serve``: what the read side sees of the whole system.

They live in their own registry, served at the app's ``/metrics``; the
dataflows' own counters are in :mod:`dataflows.metrics`, on each flow's
``METRICS_PORT``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, generate_latest

REGISTRY = CollectorRegistry(auto_describe=True)

SERVER_UP = Gauge("alpha_panda_server_up", "1 when the server answered its last probe", ["server"],
                  registry=REGISTRY)  # fmt: skip
DATAFLOW_UP = Gauge("alpha_panda_dataflow_up", "1 when the dataflow process is running", ["dataflow"],
                    registry=REGISTRY)  # fmt: skip
CONSUMER_LAG = Gauge(
    "alpha_panda_consumer_lag",
    "Messages between a partition's log end and the dataflow's last snapshotted position",
    ["dataflow", "topic", "partition"],
    registry=REGISTRY,
)
DLQ_DEPTH = Gauge("alpha_panda_dlq_depth", "Messages in a dead-letter topic", ["topic"], registry=REGISTRY)
ACCOUNT_TOTAL_PNL = Gauge("alpha_panda_account_total_pnl", "Latest total P&L of an account (Redis)",
                          ["broker", "strategy"], registry=REGISTRY)  # fmt: skip
ACCOUNT_TOTAL_VALUE = Gauge("alpha_panda_account_total_value", "Latest total value of an account (Redis)",
                            ["broker", "strategy"], registry=REGISTRY)  # fmt: skip
ACCOUNT_FILLS = Gauge("alpha_panda_account_fills", "Fills of an account in the ledger",
                      ["broker", "strategy"], registry=REGISTRY)  # fmt: skip


def record_health(
    servers: Iterable[Mapping[str, Any]],
    flows: Iterable[Mapping[str, Any]],
    lag: Iterable[Mapping[str, Any]],
    dlq: Mapping[str, int],
) -> None:
    """Set the health gauges from one health check (series no longer seen are dropped)."""
    DATAFLOW_UP.clear()
    CONSUMER_LAG.clear()
    for server in servers:
        SERVER_UP.labels(server["name"]).set(1 if server["up"] else 0)
    for flow in flows:
        DATAFLOW_UP.labels(flow["name"]).set(1 if flow["alive"] else 0)
    for row in lag:
        CONSUMER_LAG.labels(row["dataflow"], row["topic"], str(row["partition"])).set(row["lag"])
    for topic, size in dlq.items():
        DLQ_DEPTH.labels(topic).set(size)


def record_accounts(accounts: Iterable[Mapping[str, Any]]) -> None:
    """Set the account gauges from the overview's account rows (only these accounts remain)."""
    for gauge in (ACCOUNT_TOTAL_PNL, ACCOUNT_TOTAL_VALUE, ACCOUNT_FILLS):
        gauge.clear()
    for row in accounts:
        labels = (row["broker"], row["strategy_id"])
        if row.get("total_pnl") is not None:
            ACCOUNT_TOTAL_PNL.labels(*labels).set(row["total_pnl"])
            ACCOUNT_TOTAL_VALUE.labels(*labels).set(row["total_value"])
        ACCOUNT_FILLS.labels(*labels).set(row["fills"])


def exposition() -> bytes:
    """The registry in the Prometheus text format."""
    return generate_latest(REGISTRY)
