"""Zerodha live execution wiring: the execution route and the halt flags, from settings.

:func:`zerodha_route` is what ``PipelineParams.routes()`` should hold for
``zerodha``: ``dry_run`` (unchanged) unless credentials are set *and*
``ZERODHA_LIVE_TRADING=true``; then a ``live`` route whose placer is a
:class:`connectors.kite.placer.KiteOrderPlacer`, retried per ``RETRY_*``
and classified by :data:`connectors.kite.errors.KITE_RULES`.

:func:`halt_flags` builds the reader of the kill switch that risk polls
(``flags.reason(broker, strategy_id)`` -> ``"halted: ..."`` or None).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream

from connectors.kite.client import KiteClient
from connectors.kite.errors import KITE_RULES
from connectors.kite.halts import HaltReader, set_halt
from connectors.kite.placer import BROKER, KiteOrderPlacer, PlacerConfig, StrategyOrders
from connectors.kite.ratelimit import RateLimiter
from connectors.kite.store import ZerodhaStore
from connectors.postgres import load_strategies
from dataflows.execution_routes import ExecutionRoute
from dataflows.ingest import decode_events
from dataflows.runtime.inputs import kafka_input
from dataflows.runtime.retry import retry_config
from dataflows.runtime.servers import Servers, resolve_servers
from dataflows.settings import Settings
from operators.failures import RetryLogic
from operators.halts import Halt, HaltFlags
from schemas.envelope import FailedEnvelope, FilledEnvelope, Outbound
from schemas.topics import ORDERS_FAILED, ORDERS_FILLED, broker_topic

log = logging.getLogger("alpha_panda.zerodha")


def kite_client(settings: Settings) -> KiteClient:
    """A client of ``KITE_API_URL`` with ``KITE_API_KEY``/``KITE_ACCESS_TOKEN``, orders at most N/s."""
    return KiteClient(
        settings.kite_api_key,
        settings.kite_access_token,
        base_url=settings.kite_api_url,
        timeout_s=settings.kite_timeout_s,
        limiter=RateLimiter(settings.zerodha_orders_per_second),
    )


def halt_flags(settings: Settings, servers: Servers | None = None) -> HaltFlags:
    """The kill switch's reader: Redis (Postgres fallback), re-read every ``HALT_REFRESH_S`` (<= 1 s)."""
    servers = servers or resolve_servers(settings)
    return HaltFlags(HaltReader(servers.redis, servers.postgres), time.monotonic, settings.halt_refresh_s)


class StrategyOrdersCache:
    """How each strategy trades live, from Postgres and settings.

    ``zerodha_trading_enabled`` and ``is_active`` come from
    ``strategy_configurations`` (re-read every ``STRATEGY_RELOAD_S``); the
    product from ``ZERODHA_PRODUCTS`` or ``ZERODHA_DEFAULT_PRODUCT``; the
    order type from ``ZERODHA_ORDER_TYPES`` or ``ZERODHA_ORDER_TYPE``.
    """

    def __init__(self, postgres_url: str, settings: Settings) -> None:
        self._url = postgres_url
        self._settings = settings
        self._ttl = settings.strategy_reload_s
        self._rows: dict[str, dict[str, Any]] = {}
        self._read_at: float | None = None
        self._lock = threading.Lock()

    def __call__(self, strategy_id: str) -> StrategyOrders | None:
        """How ``strategy_id`` trades live, or None if no such strategy."""
        with self._lock:
            now = time.monotonic()
            if self._read_at is None or now - self._read_at >= self._ttl:
                self._rows = {row["id"]: row for row in load_strategies(self._url)}
                self._read_at = now
            row = self._rows.get(strategy_id)
        if row is None:
            return None
        s = self._settings
        return StrategyOrders(
            enabled=bool(row.get("is_active") and row.get("zerodha_trading_enabled")),
            product=s.zerodha_products.get(strategy_id, s.zerodha_default_product),
            order_type=s.zerodha_order_types.get(strategy_id, s.zerodha_order_type),
        )


def halt_on_authentication_failure(servers: Servers) -> Any:
    """A callback that halts the whole ``zerodha`` broker and raises the alert (a CRITICAL log)."""

    def halt(err: BaseException) -> None:
        reason = f"authentication failure ({type(err).__name__}); run `alpha-panda kite login`"
        log.critical("ALERT zerodha: Kite refused the access token; halting the broker: %s", reason)
        try:
            set_halt(servers.postgres, servers.redis, Halt(BROKER, "*", reason), by="zerodha placer")
        except Exception:
            log.exception("ALERT zerodha: could not record the halt")

    return halt


def order_updates(
    flow: Dataflow, servers: Servers, settings: Settings, service: str
) -> tuple[Stream[FilledEnvelope | FailedEnvelope], Stream[Outbound]]:
    """Fills and failures of live Zerodha orders, as the all-in-one flow applies them.

    In: ``zerodha.orders.filled`` and ``zerodha.orders.failed`` (published by
    ``dataflows.zerodha_updates``, and the placer's own refusals), read from
    the beginning or the recovered offsets. Out: (live fills and every
    failure, the dead letters of undecodable messages). Fills not marked
    ``live`` (dry-run fills of an earlier session on the same topic) are
    not the live account's and are left out.
    """
    filled, failed = broker_topic(BROKER, ORDERS_FILLED), broker_topic(BROKER, ORDERS_FAILED)
    raw = kafka_input(flow, "zerodha_order_updates", servers, [filled, failed], tail=settings.kafka_tail)
    split = op.branch("zerodha_fill_or_failure", raw, lambda message: message.topic == filled)
    fills, dead_fills = decode_events("zerodha_fills", split.trues, FilledEnvelope, service=service)
    failures, dead_failures = decode_events("zerodha_failures", split.falses, FailedEnvelope, service=service)
    live_fills = op.filter("zerodha_live_fills", fills, lambda fill: fill.data.execution_mode == "live")
    updates = op.merge("zerodha_order_updates_in", live_fills, failures)
    return updates, op.merge("zerodha_order_updates_dlq", dead_fills, dead_failures)


def zerodha_route(settings: Settings, servers: Servers | None = None) -> ExecutionRoute:
    """The ``zerodha`` execution route: ``dry_run`` unless live trading is fully configured.

    Live needs ``KITE_API_KEY``, an access token (``KITE_ACCESS_TOKEN`` or
    ``alpha-panda kite login``'s file) and ``ZERODHA_LIVE_TRADING=true``;
    each order also needs its strategy's ``zerodha_trading_enabled``.
    """
    if not settings.zerodha_live:
        return ExecutionRoute("dry_run")
    servers = servers or resolve_servers(settings)
    placer = KiteOrderPlacer(
        kite_client(settings),
        ZerodhaStore(servers.postgres),
        PlacerConfig(
            settings.zerodha_max_order_notional,
            settings.zerodha_max_daily_orders,
            confirm_s=settings.kite_timeout_s,
        ),
        strategy_orders=StrategyOrdersCache(servers.postgres, settings),
        halts=halt_flags(settings, servers),
        on_authentication_failure=halt_on_authentication_failure(servers),
    )
    return ExecutionRoute(
        "live",
        live_placer=placer,
        retry=RetryLogic(retry_config(settings), random.Random(settings.fill_seed)),  # noqa: S311 - jitter
        rules=KITE_RULES,
    )
