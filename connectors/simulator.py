"""A deterministic synthetic market: random walks with regimes.

Each instrument alternates between a *trending* regime (a drift strong
enough to cross the momentum threshold) and a *mean-reverting* regime
(an Ornstein-Uhlenbeck pull to an anchor, with occasional shocks that
push the price through a Bollinger band) so that both strategies trade.
Everything comes from one ``random.Random(seed)``: the same arguments
always give the same ticks.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import orjson

IST = timezone(timedelta(hours=5, minutes=30))
DEFAULT_START = datetime(2024, 1, 2, 9, 15, tzinfo=IST)
FIRST_TOKEN = 256265


@dataclass(frozen=True)
class MarketSpec:
    """What to simulate: instruments, ticks per instrument, seed and pacing."""

    instruments: int = 10
    ticks_per_instrument: int = 1000
    seed: int = 7
    interval: timedelta = timedelta(milliseconds=250)
    start: datetime = DEFAULT_START
    regime_length: int = 150
    first_token: int = FIRST_TOKEN

    def tokens(self) -> list[int]:
        """Instrument tokens simulated, in order."""
        return [self.first_token + 1000 * i for i in range(self.instruments)]


@dataclass
class _Walk:
    price: float
    anchor: float
    drift: float
    trending: bool


def _tick_size_round(price: float) -> float:
    return max(0.05, round(round(price / 0.05) * 0.05, 2))


def simulate(spec: MarketSpec) -> Iterator[dict[str, object]]:
    """Yield producer-form ``market_tick`` messages, instruments round-robin."""
    rng = random.Random(spec.seed)  # noqa: S311 - a simulation, not cryptography
    tokens = spec.tokens()
    walks = {t: _Walk(price := rng.uniform(80, 3000), price, 0.0, False) for t in tokens}
    volume = dict.fromkeys(tokens, 0)
    for step in range(spec.ticks_per_instrument):
        when = spec.start + step * spec.interval
        for token in tokens:
            walk = walks[token]
            if step % spec.regime_length == 0:
                walk.trending = rng.random() < 0.5
                walk.drift = rng.choice((-1, 1)) * rng.uniform(0.0008, 0.0015)
                walk.anchor = walk.price
            if walk.trending:
                change = walk.drift + rng.gauss(0, 0.001)
            else:
                pull = 0.05 * (walk.anchor - walk.price) / walk.anchor
                shock = rng.choice((-1, 1)) * 0.02 if rng.random() < 0.01 else 0.0
                change = pull + shock + rng.gauss(0, 0.0015)
            walk.price = max(1.0, walk.price * (1 + change))
            volume[token] += rng.randint(1, 500)
            yield {
                "type": "market_tick",
                "data": {
                    "instrument_token": token,
                    "last_price": _tick_size_round(walk.price),
                    "timestamp": when.isoformat(),
                    "volume": volume[token],
                },
            }


def simulate_lines(spec: MarketSpec) -> Iterator[bytes]:
    """Yield the simulated ticks as JSON lines (with trailing newline)."""
    for message in simulate(spec):
        yield orjson.dumps(message) + b"\n"
