"""Paper fill simulation: a validated signal in, a filled order out.

A BUY fills at ``p · (1 + slippage_bps/1e4)``, a SELL at
``p · (1 − slippage_bps/1e4)``; fees are ``commission_bps/1e4`` of the fill
notional. Maths is in :class:`~decimal.Decimal`; prices and fees leave as
floats, as the wire format carries them.

Randomness (for future partial-fill or latency models) must come from
:meth:`FillSimulator.rng_for`, which seeds a private generator from
``f"{seed}:{order_id}"``: the same order gets the same draws whichever
worker handles it and in whatever order orders arrive, so replays are
repeatable. The default model draws nothing.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from operators.costs import Costs, build_with_costs
from operators.money import to_decimal
from operators.parameters import require
from schemas.events import ExecutionMode, OrderFilled, OrderSubmitted, ValidatedSignal


@dataclass(frozen=True)
class FillConfig:
    """Parameters of the paper fill model.

    ``costs``: slippage and commission (:class:`operators.costs.Costs`, the
    one risk estimates with; flat ``slippage_bps`` and ``commission_bps`` in
    ``from_parameters``).
    ``latency``: added to the signal's timestamp to give the fill time (>= 0;
    a number of seconds in ``from_parameters``).
    ``seed``: base seed of the per-order random generators.
    """

    costs: Costs = Costs()
    latency: timedelta = timedelta(0)
    seed: int = 0

    def __post_init__(self) -> None:
        """Reject a negative latency (``Costs`` checks itself)."""
        require(self.latency >= timedelta(0), self, "latency", self.latency, "a duration >= 0")

    @classmethod
    def from_parameters(cls, parameters: Mapping[str, Any]) -> FillConfig:
        """Build a config from a parameter mapping.

        Raises:
            ConfigError: unknown name, wrong type or negative value.
        """
        return build_with_costs(cls, parameters)


class FillSimulator:
    """Stateless paper broker: deterministic fills of validated signals."""

    def __init__(self, config: FillConfig) -> None:
        self.config = config

    def rng_for(self, order_id: str) -> random.Random:
        """Return a generator seeded from ``f"{seed}:{order_id}"`` alone.

        String seeds are hashed with SHA-512 by :class:`random.Random`, so the
        draws do not depend on the process, ``PYTHONHASHSEED`` or the worker.
        """
        return random.Random(f"{self.config.seed}:{order_id}")  # noqa: S311 - simulation, not crypto

    def fill(
        self,
        order_id: str,
        validated: ValidatedSignal,
        *,
        broker: str,
        execution_mode: ExecutionMode,
    ) -> OrderFilled:
        """Fill ``validated`` in full at the slipped price.

        Returns the fill with ``fill_price`` (price per share) and ``fees``
        (account currency), timestamped ``validated.timestamp + latency``.
        """
        signal = validated.original_signal
        quantity = validated.validated_quantity
        costs = self.config.costs
        price = costs.fill_price(signal.signal_type, to_decimal(validated.validated_price))
        fees = costs.fees(price * quantity)
        return OrderFilled(
            order_id=order_id,
            strategy_id=signal.strategy_id,
            instrument_token=signal.instrument_token,
            side=signal.signal_type,
            quantity=quantity,
            timestamp=validated.timestamp + self.config.latency,
            broker=broker,
            execution_mode=execution_mode,
            fill_price=float(price),
            fees=float(fees),
        )

    def submitted(
        self,
        order_id: str,
        validated: ValidatedSignal,
        *,
        broker: str,
        execution_mode: ExecutionMode,
        status: str,
    ) -> OrderSubmitted:
        """Return the submission record of ``validated`` at its validated price and time."""
        signal = validated.original_signal
        return OrderSubmitted(
            order_id=order_id,
            strategy_id=signal.strategy_id,
            instrument_token=signal.instrument_token,
            side=signal.signal_type,
            quantity=validated.validated_quantity,
            timestamp=validated.timestamp,
            broker=broker,
            execution_mode=execution_mode,
            price=validated.validated_price,
            status=status,
        )
