"""Bytewax glue the shard logics share: the snapshots they owe, at end of input and after a quiet spell.

A shard (a :class:`operators.shard.TradingShard` or an
:class:`operators.account_shard.AccountShard`) keeps the accounts that
changed since their last snapshot. Its logic emits them at end of input and,
in live flows, once ``idle_after`` of wall-clock time passed without a new
item, so Redis shows the latest books in a quiet market.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Protocol

from bytewax.operators import StatefulLogic

from schemas.envelope import Outbound


class OwesSnapshots(Protocol):
    """What a shard offers its logic: the snapshots it still owes, and whether it owes any."""

    def flush(self) -> list[Outbound]:
        """The snapshots still owed."""
        ...

    @property
    def has_pending(self) -> bool:
        """Whether some account changed since its last snapshot."""
        ...


class FlushesWhenIdle:
    """``on_eof``, ``notify_at`` and ``on_notify`` of a logic around one shard (None before its first item).

    Out: one list of messages per flush, none when nothing is owed.
    """

    _shard: OwesSnapshots | None
    _idle_after: timedelta | None
    _flush_at: datetime | None

    def _idle_flush(self) -> list[Outbound]:
        """The flush after a quiet spell (by default the same as at end of input)."""
        return self._shard.flush() if self._shard is not None else []

    def on_eof(self) -> tuple[Iterable[list[Outbound]], bool]:
        """Emit every snapshot still owed."""
        out = self._shard.flush() if self._shard is not None else []
        return ((out,) if out else ()), StatefulLogic.RETAIN

    def notify_at(self) -> datetime | None:
        """Wake ``idle_after`` from the first item that left snapshots owed; never when none are."""
        idle = self._idle_after
        if idle is None or self._shard is None or not self._shard.has_pending:
            self._flush_at = None
            return None
        if self._flush_at is None:
            self._flush_at = datetime.now(UTC) + idle
        return self._flush_at

    def on_notify(self) -> tuple[Iterable[list[Outbound]], bool]:
        """A quiet market: bring Redis to the latest books without waiting for the next tick."""
        self._flush_at = None
        out = self._idle_flush()
        return ((out,) if out else ()), StatefulLogic.RETAIN
