"""Reconnect backoff of the streaming feeds: the retry policy of :mod:`operators.failures`.

Attempt ``n`` (0-based) waits :func:`operators.failures.full_jitter_delay`
of retry ``n + 1``: uniform in ``[0, min(maximum_s, initial_s * 2**n))``,
drawn from an injected :class:`random.Random`, so many clients dropped
together do not reconnect in lock-step.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from connectors.marketdata.errors import FeedGaveUpError
from operators.failures import full_jitter_delay


@dataclass(frozen=True, slots=True)
class BackoffConfig:
    """Reconnect policy: delays in seconds; ``max_attempts`` None retries forever."""

    initial_s: float = 0.5
    maximum_s: float = 30.0
    max_attempts: int | None = None


@dataclass(slots=True)
class Backoff:
    """Counts consecutive failed connections and says how long to wait next."""

    config: BackoffConfig = field(default_factory=BackoffConfig)
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def next_delay(self, step: str) -> float:
        """Return the next wait in seconds and count the attempt.

        Raises:
            FeedGaveUpError: ``max_attempts`` consecutive failures already.
        """
        limit = self.config.max_attempts
        if limit is not None and self.attempt >= limit:
            msg = f"{step}: gave up after {self.attempt} consecutive failed connection(s)"
            raise FeedGaveUpError(msg)
        self.attempt += 1
        return full_jitter_delay(self.attempt, self.config.initial_s, self.config.maximum_s, self.rng)

    def reset(self) -> None:
        """Forget past failures after a connection that worked."""
        self.attempt = 0
