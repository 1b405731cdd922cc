"""At most N calls in any window of one second, shared by every caller of a client.

Kite Connect allows 10 order requests a second per API key; the default of
8 stays under it with room for clock jitter. Clock and sleep are injected
so tests count exact waits.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from connectors.kite.errors import KiteError


class RateLimiter:
    """A sliding window: :meth:`acquire` waits until fewer than ``per_second`` calls began in the last second.

    Thread-safe; waits happen outside the lock.
    """

    def __init__(
        self,
        per_second: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        window_s: float = 1.0,
    ) -> None:
        if per_second < 1:
            msg = f"RateLimiter.per_second must be >= 1, got {per_second}"
            raise KiteError(msg)
        self.per_second = per_second
        self._clock = clock
        self._sleep = sleep
        self._window = window_s
        self._starts: deque[float] = deque()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Wait for a slot; return the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                while self._starts and now - self._starts[0] >= self._window:
                    self._starts.popleft()
                if len(self._starts) < self.per_second:
                    self._starts.append(now)
                    return waited
                delay = self._window - (now - self._starts[0])
            self._sleep(delay)
            waited += delay
