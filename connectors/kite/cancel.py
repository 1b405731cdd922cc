"""Cancel our open Kite orders (``alpha-panda halt --cancel-open``)."""

from __future__ import annotations

from dataclasses import dataclass

from connectors.kite.client import KiteClient
from connectors.kite.errors import KiteApiError
from connectors.kite.placer import TAG_PREFIX
from connectors.kite.store import ZerodhaStore


@dataclass(frozen=True)
class Cancellation:
    """One open order we asked Kite to cancel, and Kite's refusal if any."""

    kite_order_id: str
    tag: str
    strategy_id: str | None
    error: str | None = None


def cancel_open_orders(
    client: KiteClient, store: ZerodhaStore, strategy_id: str | None = None
) -> list[Cancellation]:
    """Cancel every open order carrying one of our tags (only ``strategy_id``'s, when given).

    Orders placed by hand (no ``ap`` tag, or a tag we never recorded) are left alone.
    """
    open_orders = [o for o in client.orders() if o.is_open and o.tag and o.tag.startswith(TAG_PREFIX)]
    intents = store.intents(sorted({o.tag for o in open_orders if o.tag}))
    done = []
    for order in open_orders:
        intent = intents.get(order.tag or "")
        if intent is None or (strategy_id is not None and intent.strategy_id != strategy_id):
            continue
        try:
            client.cancel_order(order.order_id)
        except KiteApiError as err:
            done.append(Cancellation(order.order_id, intent.tag, intent.strategy_id, str(err)))
            continue
        done.append(Cancellation(order.order_id, intent.tag, intent.strategy_id))
    return done
