"""Our Zerodha positions (Redis portfolios) against Kite's positions and holdings.

Kite has one account for every strategy, so ours is the sum over every
``zerodha:portfolio:<strategy>`` snapshot, per instrument. Kite's figure is
net positions (today's trades) plus holdings (settled and T1 shares).
:func:`adopt` writes Kite's figures into the portfolio of the one strategy
that holds the instrument (or the one named), keeping cash and P&L, and
records each adoption in Postgres (:mod:`connectors.adjustments`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson
import redis

from connectors.adjustments import Adjustment, record_adjustments
from connectors.errors import RedisConnectorError, redact_url
from connectors.kite.client import KiteClient
from connectors.redis_portfolio import portfolio_key, read_portfolios, redis_client
from operators.broker_reconcile import BrokerPosition, PositionDifference, compare_positions

BROKER = "zerodha"


def our_positions(portfolios: dict[str, dict[str, Any]]) -> dict[int, int]:
    """Net shares per token over every strategy's snapshot (zero positions left out)."""
    totals: dict[int, int] = defaultdict(int)
    for snapshot in portfolios.values():
        for token, position in (snapshot.get("positions") or {}).items():
            totals[int(token)] += int(position["quantity"])
    return {token: qty for token, qty in totals.items() if qty}


def kite_positions(client: KiteClient) -> dict[int, BrokerPosition]:
    """Kite's net shares and average price per token: positions plus holdings."""
    quantity: dict[int, int] = defaultdict(int)
    cost: dict[int, float] = defaultdict(float)
    symbol: dict[int, str] = {}
    for row in [*client.positions(), *client.holdings()]:
        quantity[row.instrument_token] += row.quantity
        cost[row.instrument_token] += row.quantity * row.average_price
        symbol[row.instrument_token] = f"{row.exchange}:{row.tradingsymbol}"
    return {
        token: BrokerPosition(qty, round(cost[token] / qty, 4) if qty else 0.0, symbol[token])
        for token, qty in quantity.items()
        if qty
    }


@dataclass(frozen=True)
class Reconciliation:
    """The differences, and the portfolios they were computed from."""

    differences: list[PositionDifference]
    portfolios: dict[str, dict[str, Any]]


def reconcile(redis_url: str, client: KiteClient) -> Reconciliation:
    """Compare our Zerodha portfolios with Kite's account."""
    portfolios = read_portfolios(redis_url, BROKER)
    return Reconciliation(compare_positions(our_positions(portfolios), kite_positions(client)), portfolios)


@dataclass(frozen=True)
class Adoption:
    """What :func:`adopt` did with one difference: the strategy it changed, or why not."""

    difference: PositionDifference
    strategy_id: str | None
    note: str


def _holders(portfolios: dict[str, dict[str, Any]], token: int) -> list[str]:
    return sorted(
        sid
        for sid, snap in portfolios.items()
        if int((snap.get("positions") or {}).get(str(token), {}).get("quantity", 0))
    )


def adopt(
    redis_url: str,
    result: Reconciliation,
    strategy_id: str | None = None,
    *,
    postgres_url: str,
    now: datetime,
) -> list[Adoption]:
    """Take Kite's quantity and average price for each difference, in one strategy's Redis snapshot.

    The strategy is the only one holding the instrument, else ``strategy_id``;
    an instrument several strategies hold is left alone (reported). Each
    adoption is recorded first in Postgres ``position_adjustments`` (dated
    ``now``), so that ``alpha-panda reconcile`` rebuilds the account with it
    (and ``--repair`` restores it should the Redis write below fail).
    """
    changed: dict[str, dict[str, Any]] = {}
    done = []
    adjustments: list[Adjustment] = []
    for diff in result.differences:
        holders = _holders(result.portfolios, diff.instrument_token)
        target = holders[0] if len(holders) == 1 else (strategy_id if not holders else None)
        if target is None or target not in result.portfolios:
            why = f"held by {', '.join(holders)}" if holders else "no strategy holds it; pass --strategy ID"
            if target is not None:
                why = f"no zerodha portfolio for strategy {target!r} in Redis"
            done.append(Adoption(diff, None, f"not adopted: {why}"))
            continue
        snapshot = changed.setdefault(target, dict(result.portfolios[target]))
        positions = dict(snapshot.get("positions") or {})
        key = str(diff.instrument_token)
        old = positions.get(key, {})
        realized = float(old.get("realized_pnl") or 0.0)
        if diff.broker == 0 and not realized:
            positions.pop(key, None)
        elif diff.broker == 0:  # flat, but its realized P&L stays visible (as the books show it)
            last = float(old.get("last_price") or 0.0)
            positions[key] = {
                "quantity": 0,
                "average_price": 0.0,
                "last_price": last,
                "realized_pnl": realized,
                "unrealized_pnl": 0.0,
            }
        else:
            last = float(old.get("last_price") or diff.broker_average_price)
            positions[key] = {
                "quantity": diff.broker,
                "average_price": diff.broker_average_price,
                "last_price": last,
                "realized_pnl": float(old.get("realized_pnl") or 0.0),
                "unrealized_pnl": round((last - diff.broker_average_price) * diff.broker, 6),
            }
        snapshot["positions"] = positions
        note = f"adopted into {target}: {diff.ours} -> {diff.broker}"
        done.append(Adoption(diff, target, note))
        adjustments.append(
            Adjustment(
                BROKER,
                target,
                diff.instrument_token,
                diff.broker,
                Decimal(str(diff.broker_average_price)),
                int(old.get("quantity") or 0),
                now,
                f"reconcile --adopt: Kite {diff.symbol or diff.instrument_token} {note}",
            )
        )
    record_adjustments(postgres_url, adjustments)
    client = redis_client(redis_url, retries=3)
    try:
        for sid, snapshot in changed.items():
            client.set(portfolio_key(BROKER, sid), orjson.dumps(snapshot))
    except redis.RedisError as err:
        msg = f"reconcile --adopt: writing portfolios to {redact_url(redis_url)} failed: {err}"
        raise RedisConnectorError(msg) from err
    finally:
        client.close()
    return done
