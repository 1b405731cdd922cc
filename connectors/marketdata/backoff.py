"""Exponential reconnect backoff with jitter; randomness is injected.

Attempt ``n`` (0-based) waits ``d/2 + U(0, d/2)`` seconds with
``d = min(maximum_s, initial_s * factor**n)`` ("equal jitter"), so many
clients dropped together do not reconnect in lock-step, and none waits less
than half the nominal delay.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from connectors.marketdata.errors import FeedGaveUpError


@dataclass(frozen=True, slots=True)
class BackoffConfig:
    """Reconnect policy: delays in seconds; ``max_attempts`` None retries forever."""

    initial_s: float = 0.5
    maximum_s: float = 30.0
    factor: float = 2.0
    max_attempts: int | None = None


@dataclass(slots=True)
class Backoff:
    """Counts consecutive failed connections and says how long to wait next."""

    config: BackoffConfig = field(default_factory=BackoffConfig)
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def next_delay(self, step: str) -> float:
        """Return the next wait in seconds and count the attempt.

        :raises FeedGaveUpError: ``max_attempts`` consecutive failures already.
        """
        limit = self.config.max_attempts
        if limit is not None and self.attempt >= limit:
            msg = f"{step}: gave up after {self.attempt} consecutive failed connection(s)"
            raise FeedGaveUpError(msg)
        config = self.config
        nominal = min(config.maximum_s, config.initial_s * config.factor**self.attempt)
        self.attempt += 1
        return nominal / 2 + self.rng.uniform(0, nominal / 2)

    def reset(self) -> None:
        """Forget past failures after a connection that worked."""
        self.attempt = 0
