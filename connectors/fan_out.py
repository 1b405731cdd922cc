"""One output step for several destinations, the slow ones written while the others are.

A live flow publishes every message to Kafka and some of them to Redis and
Postgres too. As separate output steps, bytewax runs them one after the
other, so each batch waits for the Postgres server, then for the broker's
acknowledgements. :class:`FanOutSink` is one step: a background route (a
Postgres table, say) gets its messages on a thread of its own, while the
foreground routes (Kafka) are written on the worker's thread. The batch
returns only when every route has written it, so each route keeps the
guarantee it had as a step of its own (at-least-once with recovery).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, NamedTuple

from bytewax.outputs import DynamicSink, StatelessSinkPartition

from schemas.envelope import Outbound, Published, messages_of

Pick = Callable[[list[Outbound]], list[Outbound]]
"""The messages of a batch that a route takes (an empty list: none this batch)."""


class Route(NamedTuple):
    """One destination of a :class:`FanOutSink`.

    ``step_id``: the name its partition is built with (client ids, dead-letter
    guards), as when it was an output step of its own. ``pick``: the messages
    it takes; ``None`` for all of them. ``background``: written on a thread of
    its own, alongside the other routes (for servers whose round trips the
    worker would otherwise wait out).
    """

    step_id: str
    sink: DynamicSink[Published]
    pick: Pick | None = None
    background: bool = False


def only(*kinds: type[Any]) -> Pick:
    """A :data:`Pick` of the messages whose envelope is one of ``kinds``."""

    def pick(messages: list[Outbound]) -> list[Outbound]:
        return [m for m in messages if isinstance(m.envelope, kinds)]

    return pick


class _FanOutPartition(StatelessSinkPartition[Published]):
    def __init__(
        self,
        routes: Sequence[tuple[Route, StatelessSinkPartition[Published]]],
        observe: Callable[[list[Outbound]], None] | None,
    ) -> None:
        self._background = [(r, p) for r, p in routes if r.background]
        self._foreground = [(r, p) for r, p in routes if not r.background]
        self._all = list(routes)
        self._observe = observe
        self._threads = (
            ThreadPoolExecutor(len(self._background), thread_name_prefix="alpha-panda-sink")
            if self._background
            else None
        )

    def write_batch(self, items: list[Published]) -> None:
        """Write the batch to every route; raise the first error once every route is done with it."""
        messages = messages_of(items)
        if self._observe is not None:
            self._observe(messages)
        pending: list[Future[None]] = []
        for route, partition in self._background:
            chosen = _chosen(route, messages)
            if chosen and self._threads is not None:
                pending.append(self._threads.submit(partition.write_batch, chosen))  # type: ignore[arg-type]
        errors: list[BaseException] = []
        for route, partition in self._foreground:
            chosen = _chosen(route, messages)
            if not chosen:
                continue
            try:
                partition.write_batch(chosen)  # type: ignore[arg-type]
            except BaseException as error:  # noqa: BLE001 - raised below, once every route is done
                errors.append(error)
        for future in pending:  # never return (or raise) while a background write still runs
            error = future.exception()
            if error is not None:
                errors.append(error)
        if errors:
            raise errors[0]

    def close(self) -> None:
        """Close every route's partition (after any background write)."""
        if self._threads is not None:
            self._threads.shutdown(wait=True)
        for _route, partition in self._all:
            partition.close()


def _chosen(route: Route, messages: list[Outbound]) -> list[Outbound]:
    return messages if route.pick is None else route.pick(messages)


class FanOutSink(DynamicSink[Published]):
    """A bytewax sink writing each batch to several :class:`Route` s, the background ones concurrently.

    In: :class:`Outbound` items, or lists of them. ``observe`` (optional) sees
    every batch's messages first, once (the flow's counters).

    Raises:
        whatever a route raises, the first of them (foreground ones first),
        once every background write of the batch has finished.
    """

    def __init__(
        self, routes: Sequence[Route], observe: Callable[[list[Outbound]], None] | None = None
    ) -> None:
        self._routes = list(routes)
        self._observe = observe

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _FanOutPartition:
        """Build every route's partition, under the route's own step id."""
        built = [(r, r.sink.build(r.step_id, worker_index, worker_count)) for r in self._routes]
        return _FanOutPartition(built, self._observe)
