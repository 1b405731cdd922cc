"""Remembering recent event ids, so redelivered events are applied once.

Transport between flows is at-least-once: after a crash a producer replays
what it emitted since its last snapshot. A consumer that keeps state (risk,
portfolio) must therefore ignore an event it has already applied. Ids are
deterministic, so remembering the recent ones is enough; the window bounds
memory and only needs to exceed what one recovery replay can redeliver.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

DEFAULT_CAPACITY = 2_048
"""Ids remembered per account; a replay redelivers at most one epoch's events."""


@dataclass
class RecentIds:
    """The last ``capacity`` ids seen, oldest forgotten first."""

    capacity: int = DEFAULT_CAPACITY
    _order: deque[str] = field(default_factory=deque)
    _ids: set[str] = field(default_factory=set)

    def __contains__(self, event_id: object) -> bool:
        """Whether ``event_id`` was seen (and not yet forgotten)."""
        return event_id in self._ids

    def __len__(self) -> int:
        """How many ids are remembered."""
        return len(self._ids)

    def add(self, event_id: str) -> bool:
        """Remember ``event_id``; ``False`` when it was already remembered."""
        if event_id in self._ids:
            return False
        self._ids.add(event_id)
        self._order.append(event_id)
        if len(self._order) > self.capacity:
            self._ids.discard(self._order.popleft())
        return True

    def copy(self) -> RecentIds:
        """A copy sharing nothing with this one."""
        return RecentIds(self.capacity, deque(self._order), set(self._ids))
