"""Carry a tick's Kafka create time through the per-stage flows, beside the events.

Across topics it travels in the ``ap-tick-created-ms`` record header
(:mod:`schemas.headers`); inside a flow an event whose input had it travels
as :class:`Stamped`, so the time follows the event to whichever worker (or
process) makes its outputs. Events without it travel bare, as before: the
replay path and the all-in-one flow never see a :class:`Stamped`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, NamedTuple

from bytewax.operators import StatefulLogic

from dataflows.delegating import Delegating
from schemas.envelope import SignalEnvelope


class Stamped(NamedTuple):
    """An item (an envelope, or a tick on its way to a shard) and its tick's Kafka create time."""

    item: Any
    tick_created_ms: int
    """Epoch milliseconds."""


def epoch_ms(moment: datetime) -> int:
    """``moment`` (timezone-aware) as whole epoch milliseconds."""
    return round(moment.timestamp() * 1000)


def unstamped(item: Any) -> Any:
    """The item itself, with or without its stamp."""
    return item.item if type(item) is Stamped else item


def carry(step: Callable[[Any], Iterable[Any]], item: Any) -> list[Any]:
    """``step(item)``'s outputs; those of a :class:`Stamped` item are stamped with its time."""
    if type(item) is Stamped:
        created = item.tick_created_ms
        return [Stamped(out, created) for out in step(item.item)]
    return list(step(item))


def stamp_output(out: Any, created: int) -> Any:
    """Stamp an output of an account step (an envelope)."""
    return Stamped(out, created)


def stamp_signal(out: tuple[str, Any], created: int) -> tuple[str, Any]:
    """Stamp a strategy shard's ``(account, SignalEnvelope)``; its marks stay bare."""
    account, item = out
    return (account, Stamped(item, created)) if isinstance(item, SignalEnvelope) else out


def carrying(
    inner: StatefulLogic[Any, Any, Any], stamp: Callable[[Any, int], Any]
) -> StatefulLogic[Any, Any, Any]:
    """``inner``, taking :class:`Stamped` inputs too and stamping their outputs with their time.

    In: what ``inner`` takes, bare or :class:`Stamped`. Out: ``inner``'s
    outputs, each passed through ``stamp(output, ms)`` when its input was
    stamped. Timers, end of input and snapshots are ``inner``'s own, so the
    recovery state is unchanged.
    """
    return _CarryTickTime(inner, stamp)


class _CarryTickTime(Delegating):
    def __init__(self, inner: StatefulLogic[Any, Any, Any], stamp: Callable[[Any, int], Any]) -> None:
        super().__init__(inner)
        self._stamp = stamp

    def on_item(self, value: Any) -> tuple[Iterable[Any], bool]:
        if type(value) is not Stamped:
            return self._inner.on_item(value)
        out, discard = self._inner.on_item(value.item)
        created, stamp = value.tick_created_ms, self._stamp
        return [stamp(o, created) for o in out], discard
