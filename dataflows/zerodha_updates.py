"""Kite order updates -> ``zerodha.orders.submitted|filled|failed`` and the ledger.

``python -m bytewax.run dataflows.zerodha_updates``. In: Kite's order
postbacks (when ``ZERODHA_POSTBACK_PORT`` is set; checksum verified with
``KITE_API_SECRET``) and, as the fallback, the order book polled every
``ZERODHA_POLL_S`` seconds. Only orders carrying one of our tags (``ap``
+ order id digits, recorded in ``zerodha_orders``) are followed.
Out: per order and state change the events of
:class:`connectors.kite.updates.OrderTracker`, on Kafka and in the ledger;
the per-stage ``portfolio_manager`` applies the fills.

With ``KAFKA_TAIL=false`` the flow polls once (after the postbacks already
received) and stops. An expired token halts the broker (and alerts) and
the flow keeps polling, so it resumes by itself after ``kite login``.
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.operators import StatefulLogic

from connectors.kite.client import KiteClient
from connectors.kite.errors import KiteError, KiteTokenError
from connectors.kite.placer import TAG_PREFIX
from connectors.kite.postback import PostbackServer
from connectors.kite.protocol import KiteOrder
from connectors.kite.store import OrderIntent, ZerodhaStore
from connectors.kite.updates import OrderTracker, TrackerState
from dataflows import live
from dataflows.outbound import to_outbound
from dataflows.zerodha import halt_on_authentication_failure, kite_client
from operators.zerodha_charges import ChargesSchedule
from schemas.envelope import AnyEnvelope

log = logging.getLogger("alpha_panda.zerodha_updates")

Update = tuple[str, tuple[KiteOrder, OrderIntent]]


class _UpdatesPartition(StatefulSourcePartition[Update, None]):
    def __init__(
        self,
        client: KiteClient,
        store: ZerodhaStore,
        poll_s: float,
        tail: bool,
        postbacks: queue.Queue[KiteOrder] | None,
        on_auth: Any,
    ) -> None:
        self._client = client
        self._store = store
        self._poll_s = poll_s
        self._tail = tail
        self._postbacks = postbacks
        self._on_auth = on_auth
        self._next_poll = 0.0
        self._done = False
        self._auth_failed = False

    def _poll(self) -> list[KiteOrder]:
        try:
            orders = self._client.orders()
        except KiteTokenError as err:
            if not self._auth_failed:
                self._on_auth(err)
            self._auth_failed = True
            return []
        except KiteError as err:
            log.warning(
                "zerodha updates: polling the order book failed (%s); next poll in %.1f s", err, self._poll_s
            )
            return []
        self._auth_failed = False
        return [o for o in orders if o.tag and o.tag.startswith(TAG_PREFIX)]

    def next_batch(self) -> list[Update]:
        if self._done:
            raise StopIteration
        orders: list[KiteOrder] = []
        while self._postbacks is not None and not self._postbacks.empty():
            orders.append(self._postbacks.get_nowait())
        now = time.monotonic()
        if now >= self._next_poll:
            orders.extend(self._poll())
            self._next_poll = now + self._poll_s
            self._done = not self._tail
        intents = self._store.intents(sorted({o.tag for o in orders if o.tag}))
        return [(o.tag, (o, intents[o.tag])) for o in orders if o.tag in intents]

    def next_awake(self) -> datetime | None:
        # Postbacks are drained every 50 ms; the order book every poll.
        return datetime.now(UTC) + timedelta(seconds=min(0.05, self._poll_s))

    def snapshot(self) -> None:
        return None

    def close(self) -> None:
        self._client.close()
        self._store.close()


class KiteUpdatesSource(FixedPartitionedSource[Update, None]):
    """One partition: postbacks (if a server is given) and the polled order book."""

    def __init__(
        self, settings: Any, servers: live.Servers, postbacks: queue.Queue[KiteOrder] | None
    ) -> None:
        self._settings = settings
        self._servers = servers
        self._postbacks = postbacks

    def list_parts(self) -> list[str]:
        """One partition: the account's order book is one stream."""
        return ["kite"]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _UpdatesPartition:
        """A client, a store and the postback queue; nothing to resume (the tracker holds state)."""
        s = self._settings
        return _UpdatesPartition(
            kite_client(s),
            ZerodhaStore(self._servers.postgres),
            s.zerodha_poll_s,
            s.kafka_tail,
            self._postbacks,
            halt_on_authentication_failure(self._servers),
        )


class _TrackLogic(StatefulLogic[tuple[KiteOrder, OrderIntent], AnyEnvelope, TrackerState]):
    def __init__(self, charges: ChargesSchedule, resume: TrackerState | None) -> None:
        self._tracker = OrderTracker(charges, resume)

    def on_item(self, value: tuple[KiteOrder, OrderIntent]) -> tuple[Iterable[AnyEnvelope], bool]:
        order, intent = value
        return self._tracker.on_order(order, intent, datetime.now(UTC)), StatefulLogic.RETAIN

    def snapshot(self) -> TrackerState:
        return self._tracker.state.copy()


def build(settings: Any, *, postback_server: PostbackServer | None = None) -> Dataflow:
    """The updates flow of ``settings``.

    A postback listener starts on ``ZERODHA_POSTBACK_HOST:PORT`` when the
    port is set (``postback_server`` overrides it, e.g. in tests).
    """
    servers = live.start(settings)
    live.await_servers(servers, kafka=True, postgres=True)
    postbacks: queue.Queue[KiteOrder] | None = None
    if postback_server is not None or settings.zerodha_postback_port:
        postbacks = queue.Queue()
        if postback_server is None:
            postback_server = PostbackServer(
                settings.kite_api_secret,
                postbacks.put,
                settings.zerodha_postback_host,
                settings.zerodha_postback_port,
            ).start()
            log.info("zerodha updates: postbacks on %s", postback_server.url)
        else:
            postback_server.on_order = postbacks.put
    charges = ChargesSchedule().with_overrides(settings.zerodha_charges)
    flow = Dataflow("alpha_panda_zerodha_updates")
    updates = op.input("kite_updates", flow, KiteUpdatesSource(settings, servers, postbacks))
    events = op.stateful("track_orders", updates, lambda resume: _TrackLogic(charges, resume))
    published = op.map("publish", op.key_rm("unkey", events), to_outbound)
    live.attach_sinks(published, servers, ledger=True, settings=settings)
    return flow


__getattr__ = live.lazy_flow(__name__, build)
