"""A stateful logic that wraps another: every call handed to the inner one, except what a wrapper changes."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from bytewax.operators import StatefulLogic


class Delegating(StatefulLogic[Any, Any, Any]):
    """``inner``'s items, notifications, end of input and snapshots, unchanged; subclasses override."""

    def __init__(self, inner: StatefulLogic[Any, Any, Any]) -> None:
        self._inner = inner

    def on_item(self, value: Any) -> tuple[Iterable[Any], bool]:
        """The inner logic's."""
        return self._inner.on_item(value)

    def on_notify(self) -> tuple[Iterable[Any], bool]:
        """The inner logic's."""
        return self._inner.on_notify()

    def on_eof(self) -> tuple[Iterable[Any], bool]:
        """The inner logic's."""
        return self._inner.on_eof()

    def notify_at(self) -> datetime | None:
        """The inner logic's."""
        return self._inner.notify_at()

    def snapshot(self) -> Any:
        """The inner logic's."""
        return self._inner.snapshot()
