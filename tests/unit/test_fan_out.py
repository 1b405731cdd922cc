"""FanOutSink: one output step, every route written before the batch is done, background routes alongside."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from connectors.fan_out import FanOutSink, Route, only
from schemas.envelope import Outbound

WAIT_S = 5.0


class _Envelope:
    def __init__(self, n: int) -> None:
        self.n = n


class _Odd(_Envelope):
    pass


def _messages(*ns: int) -> list[Outbound]:
    return [Outbound("t", str(n), _Odd(n) if n % 2 else _Envelope(n), None) for n in ns]  # type: ignore[arg-type]


class _Recording(DynamicSink[Any]):
    """A sink that records each batch's messages, the thread that wrote it, and how it was built."""

    def __init__(self, before_write: Any = None, error: BaseException | None = None) -> None:
        self.batches: list[list[int]] = []
        self.threads: list[str] = []
        self.built_as: list[tuple[str, int, int]] = []
        self.closed = 0
        self._before_write = before_write
        self._error = error

    def build(self, step_id: str, worker_index: int, worker_count: int) -> StatelessSinkPartition[Any]:
        self.built_as.append((step_id, worker_index, worker_count))
        return _RecordingPartition(self)


class _RecordingPartition(StatelessSinkPartition[Any]):
    def __init__(self, sink: _Recording) -> None:
        self._sink = sink

    def write_batch(self, items: list[Any]) -> None:
        if self._sink._before_write is not None:
            self._sink._before_write()
        if self._sink._error is not None:
            raise self._sink._error
        self._sink.batches.append([m.envelope.n for m in items])
        self._sink.threads.append(threading.current_thread().name)

    def close(self) -> None:
        self._sink.closed += 1


def test_each_route_gets_the_messages_it_picks_in_order_and_is_built_under_its_own_step_id() -> None:
    everything, odd = _Recording(), _Recording()
    seen: list[list[int]] = []
    sink = FanOutSink(
        [Route("kafka", everything), Route("ledger", odd, only(_Odd), background=True)],
        observe=lambda messages: seen.append([m.envelope.n for m in messages]),
    )
    partition = sink.build("outputs", 1, 2)

    partition.write_batch([_messages(1, 2, 3), _messages(4)[0]])  # a list and a single message
    partition.write_batch(_messages(6, 8))  # nothing for the odd route: it is not called

    assert everything.batches == [[1, 2, 3, 4], [6, 8]]
    assert odd.batches == [[1, 3]]
    assert seen == [[1, 2, 3, 4], [6, 8]]
    assert everything.built_as == [("kafka", 1, 2)]
    assert odd.built_as == [("ledger", 1, 2)]
    assert everything.threads == ["MainThread", "MainThread"]
    assert odd.threads[0].startswith("alpha-panda-sink")


def test_a_background_route_is_written_while_the_foreground_one_is() -> None:
    # The foreground write waits until the background one has started: one after the other, it would time out.
    started = threading.Event()
    background = _Recording(before_write=started.set)
    foreground = _Recording(before_write=lambda: started.wait(WAIT_S) or pytest.fail("not concurrent"))
    partition = FanOutSink([Route("kafka", foreground), Route("ledger", background, background=True)]).build(
        "outputs", 0, 1
    )

    partition.write_batch(_messages(1, 2))

    assert foreground.batches == [[1, 2]]
    assert background.batches == [[1, 2]]


def test_a_batch_returns_only_once_the_background_route_has_written_it() -> None:
    release = threading.Event()
    slow = _Recording(before_write=lambda: release.wait(WAIT_S))
    partition = FanOutSink([Route("ledger", slow, background=True)]).build("outputs", 0, 1)
    timer = threading.Timer(0.2, release.set)
    timer.start()

    partition.write_batch(_messages(5))

    assert release.is_set()
    assert slow.batches == [[5]]
    timer.join()


def test_a_background_error_is_raised_after_every_other_route_has_written() -> None:
    failing = _Recording(error=RuntimeError("ledger refused the rows"))
    kafka, redis = _Recording(), _Recording()
    partition = FanOutSink(
        [Route("kafka", kafka), Route("ledger", failing, background=True), Route("redis", redis)]
    ).build("outputs", 0, 1)

    with pytest.raises(RuntimeError, match="ledger refused the rows"):
        partition.write_batch(_messages(1))

    assert kafka.batches == [[1]]
    assert redis.batches == [[1]]


def test_a_foreground_error_waits_for_the_background_and_wins_over_its_error() -> None:
    release = threading.Event()
    background = _Recording(before_write=lambda: release.wait(WAIT_S), error=ValueError("second"))
    foreground = _Recording(error=KeyError("first"))
    later = _Recording()
    partition = FanOutSink(
        [Route("ledger", background, background=True), Route("kafka", foreground), Route("redis", later)]
    ).build("outputs", 0, 1)
    timer = threading.Timer(0.2, release.set)
    timer.start()

    with pytest.raises(KeyError, match="first"):
        partition.write_batch(_messages(1))

    assert release.is_set(), "raised before the background write was done"
    assert later.batches == [[1]], "a later route still gets the batch"
    timer.join()


def test_close_closes_every_route_once() -> None:
    routes = [_Recording(), _Recording()]
    sink = FanOutSink([Route("a", routes[0]), Route("b", routes[1], background=True)])
    partition = sink.build("outputs", 0, 1)
    partition.write_batch(_messages(1))

    partition.close()

    assert [r.closed for r in routes] == [1, 1]
