"""Start-of-day reconciliation of our positions with a broker's: pure comparison.

In: our net quantity per instrument token (summed over every strategy's
portfolio at the broker) and the broker's net quantity and average price
per token (positions plus holdings). Out: one :class:`PositionDifference`
per token where they disagree, ordered by token.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class BrokerPosition:
    """The broker's figure for one instrument: shares held and their average price (rupees)."""

    quantity: int
    average_price: float
    symbol: str = ""


@dataclass(frozen=True)
class PositionDifference:
    """One instrument on which we and the broker disagree (``broker - ours`` shares)."""

    instrument_token: int
    symbol: str
    ours: int
    broker: int
    broker_average_price: float

    @property
    def difference(self) -> int:
        """Shares the broker holds beyond ours (negative: we think we hold more)."""
        return self.broker - self.ours


def compare_positions(
    ours: Mapping[int, int], broker: Mapping[int, BrokerPosition]
) -> list[PositionDifference]:
    """Every token whose quantities differ; a token absent on one side counts as 0 there."""
    out = []
    for token in sorted(set(ours) | set(broker)):
        theirs = broker.get(token, BrokerPosition(0, 0.0))
        mine = ours.get(token, 0)
        if mine != theirs.quantity:
            out.append(PositionDifference(token, theirs.symbol, mine, theirs.quantity, theirs.average_price))
    return out
