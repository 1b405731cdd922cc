"""A user strategy installed from a temporary package, found through its entry point."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from operators.strategy_registry import forget_resolved

PACKAGE = "ap_user_strategies"
ENTRY_POINT = "user_band"

SOURCE = '''
"""A user's strategy: BUY above a band around the mean of the last prices, SELL below it."""

from collections import deque
from dataclasses import dataclass, field

from operators.decision import Decision
from operators.parameters import require
from operators.strategy_api import StrategyState


@dataclass(frozen=True)
class BandConfig:
    window: int = 5
    width: float = 0.002
    position_size: int = 10

    def __post_init__(self):
        require(self.window >= 2, self, "window", self.window, "an integer >= 2")


@dataclass
class BandState(StrategyState):
    prices: deque = field(default_factory=deque)


class Band:
    config_type = BandConfig

    def __init__(self, config):
        self.config = config

    def new_state(self):
        return BandState(deque(maxlen=self.config.window))

    def on_price(self, state, price):
        state.prices.append(price)
        if len(state.prices) < self.config.window:
            return None
        mean = sum(state.prices) / len(state.prices)
        if price > mean * (1 + self.config.width):
            return Decision("BUY", self.config.position_size, 1.0, {"mean": mean})
        if price < mean * (1 - self.config.width):
            return Decision("SELL", self.config.position_size, 1.0, {"mean": mean})
        return None


class Exploding(Band):
    def __init__(self, config):
        raise RuntimeError("no licence file found")


class NoStep:
    config_type = BandConfig

    def new_state(self):
        return BandState()
'''


@pytest.fixture
def user_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Put ``ap_user_strategies`` (module and dist-info with entry points) on ``sys.path``; yield its name.

    The entry points: ``user_band`` (works), ``user_exploding`` (its constructor
    raises), ``user_missing`` (names a class that does not exist), ``user_nostep``
    (no ``on_price``). Removed again afterwards.
    """
    site = tmp_path / "site"
    (site / PACKAGE).mkdir(parents=True)
    (site / PACKAGE / "__init__.py").write_text(SOURCE, encoding="utf-8")
    info = site / f"{PACKAGE}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {PACKAGE}\nVersion: 0.1\n", encoding="utf-8"
    )
    (info / "entry_points.txt").write_text(
        "[alpha_panda.strategies]\n"
        f"{ENTRY_POINT} = {PACKAGE}:Band\n"
        f"user_exploding = {PACKAGE}:Exploding\n"
        f"user_missing = {PACKAGE}:Gone\n"
        f"user_nostep = {PACKAGE}:NoStep\n",
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(site))
    forget_resolved()
    yield PACKAGE
    forget_resolved()
    sys.modules.pop(PACKAGE, None)
