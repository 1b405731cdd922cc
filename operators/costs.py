"""What a trade costs beyond its price: one model for the paper fills and for risk's estimate.

:class:`Costs` holds slippage and commission in basis points. The fill
simulator fills at ``costs.fill_price`` and charges ``costs.fees``; risk
estimates a signal's cash with the same two, so the estimate and the fill
never disagree. Configs that carry costs take them flat in their parameter
mappings (``slippage_bps``, ``commission_bps``): :func:`build_with_costs`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal, TypeVar

from operators.errors import ConfigError
from operators.money import commission, slipped_price
from operators.parameters import build_config, require

COST_PARAMETERS = ("slippage_bps", "commission_bps")
"""The parameter names that configure :class:`Costs`."""

ConfigT = TypeVar("ConfigT")


@dataclass(frozen=True)
class Costs:
    """Slippage and commission, in basis points (>= 0)."""

    slippage_bps: Decimal = Decimal("5")
    commission_bps: Decimal = Decimal("10")

    _buy: Decimal = field(init=False, repr=False, compare=False)
    _sell: Decimal = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        """Reject negative costs; work out the slippage factors once."""
        require(self.slippage_bps >= 0, self, "slippage_bps", self.slippage_bps, "a number >= 0")
        require(self.commission_bps >= 0, self, "commission_bps", self.commission_bps, "a number >= 0")
        # The factors slipped_price multiplies by, computed as it computes them.
        object.__setattr__(self, "_buy", slipped_price("BUY", Decimal(1), self.slippage_bps))
        object.__setattr__(self, "_sell", slipped_price("SELL", Decimal(1), self.slippage_bps))

    def fill_price(self, side: Literal["BUY", "SELL"], price: Decimal) -> Decimal:
        """The price per share a ``side`` order at ``price`` fills at (worse by the slippage)."""
        return price * (self._buy if side == "BUY" else self._sell)

    def fees(self, notional: Decimal) -> Decimal:
        """The commission on ``notional`` (money)."""
        return commission(notional, self.commission_bps)


def build_with_costs(cls: type[ConfigT], parameters: Mapping[str, Any]) -> ConfigT:
    """:func:`operators.parameters.build_config` for a config with a ``costs`` field.

    ``slippage_bps`` and ``commission_bps`` in ``parameters`` build its
    :class:`Costs`; every other name is the config's own.

    Raises:
        ConfigError: an unknown name, a wrong type or a negative value.
    """
    if not isinstance(parameters, Mapping):
        msg = f"{cls.__name__} parameters must be a mapping, got {parameters!r}"
        raise ConfigError(msg)
    own = {k: v for k, v in parameters.items() if k not in COST_PARAMETERS}
    costs = build_config(Costs, {k: v for k, v in parameters.items() if k in COST_PARAMETERS})
    return dataclasses.replace(build_config(cls, own), costs=costs)  # type: ignore[type-var]
