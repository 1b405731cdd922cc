"""The kill switch as data: which brokers and strategies are halted, and a polled reader.

A halt has a scope: a broker (``zerodha``), a strategy on every broker, a
strategy on one broker, or everything (``*`` stands for "any"). While a
scope is halted, new signals it covers are rejected with the rule
``halted`` and no new live order is placed.

:class:`HaltFlags` is what a flow holds: it re-reads the flags through an
injected ``fetch`` (Redis, falling back to Postgres; see
``connectors/kite/halts.py``) at most every ``refresh_s`` seconds of an
injected monotonic clock, and keeps the last good answer when a read fails.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final

ANY: Final = "*"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Halt:
    """One halted scope: ``broker`` and ``strategy_id`` (``*`` = any), why and who."""

    broker: str = ANY
    strategy_id: str = ANY
    reason: str = ""

    @property
    def scope(self) -> str:
        """``<broker>/<strategy_id>``, the flag's key in Redis and Postgres."""
        return f"{self.broker}/{self.strategy_id}"

    def covers(self, broker: str, strategy_id: str) -> bool:
        """Whether this halt stops ``strategy_id`` trading on ``broker``."""
        return self.broker in (ANY, broker) and self.strategy_id in (ANY, strategy_id)


@dataclass(frozen=True)
class HaltSet:
    """Every halt in force, by scope."""

    halts: tuple[Halt, ...] = ()

    @classmethod
    def of(cls, halts: Iterable[Halt]) -> HaltSet:
        """A set sorted by scope (equal sets compare equal)."""
        return cls(tuple(sorted(halts, key=lambda h: h.scope)))

    def reason(self, broker: str, strategy_id: str) -> str | None:
        """The ``halted`` rejection reason for an account, or None when it may trade."""
        for halt in self.halts:
            if halt.covers(broker, strategy_id):
                detail = f": {halt.reason}" if halt.reason else ""
                return f"halted: {halt.scope} is halted{detail}"
        return None

    def broker_halted(self, broker: str) -> bool:
        """Whether the whole broker is halted (every strategy on it)."""
        return any(h.strategy_id == ANY and h.broker in (ANY, broker) for h in self.halts)


@dataclass
class HaltFlags:
    """A cached, polled view of the halts; cheap to ask on every signal.

    In: ``fetch()`` returning the current :class:`HaltSet` (may raise), a
    monotonic ``clock`` in seconds, ``refresh_s`` (<= 1 s so a halt takes
    effect within a second). Out: :meth:`reason` per account.
    A failed fetch keeps the last good set and is retried on the next ask
    after ``refresh_s``.
    """

    fetch: Callable[[], HaltSet]
    clock: Callable[[], float]
    refresh_s: float = 1.0
    current: HaltSet = field(default_factory=HaltSet)
    _read_at: float | None = None

    def refresh(self, *, force: bool = False) -> HaltSet:
        """Re-read the flags if ``refresh_s`` has passed (or ``force``); return the set in force."""
        now = self.clock()
        if force or self._read_at is None or now - self._read_at >= self.refresh_s:
            self._read_at = now
            try:
                self.current = self.fetch()
            except Exception as err:  # a failed read keeps the last good flags
                log.warning(
                    "halt flags: read failed (%s: %s); keeping the last flags", type(err).__name__, err
                )
        return self.current

    def reason(self, broker: str, strategy_id: str) -> str | None:
        """``halted: <scope> is halted: <why>`` if the account is halted, else None."""
        return self.refresh().reason(broker, strategy_id)
