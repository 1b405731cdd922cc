"""The conformance kit for strategies: ``check_strategy(cls, params, ticks)``.

Proves what the framework relies on (:mod:`operators.strategy_api`):

1. **deterministic**: two runs over the same ticks give the same decisions;
2. **snapshots are copies**: a state copied (and pickled) mid-stream, then
   restored, gives the same decisions afterwards as the uninterrupted run,
   and running on does not change the copy;
3. **small state**: each instrument's state pickles, to at most
   ``max_state_bytes`` (the bytes are reported);
4. **batch step**: ``on_prices`` (when the class has one) gives the same
   decisions as ``on_price`` one price at a time;
5. **one or two workers**: the whole pipeline (risk, fills, books, paper
   broker) run over the ticks gives the same messages under one Bytewax
   worker as under two, and its signals are the decisions of step 1.

``ticks`` are ``(instrument_token, price)`` pairs in time order; the kit
dates them one second apart. A failure raises :class:`ConformanceError`
naming the check.
"""

from __future__ import annotations

import pickle
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import bytewax.operators as op
import orjson
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, cluster_main, run_main

from dataflows.clock import event_time_clock
from dataflows.pipeline import PipelineParams, build_pipeline
from operators.decision import Decision
from operators.strategy import StrategyConfig
from operators.strategy_api import EdgeTriggered, config_from_parameters, copy_state, run_strategy
from operators.strategy_registry import check_interface
from schemas.codec import RawBatch, encode
from schemas.envelope import Outbound
from schemas.errors import AlphaPandaError

START = datetime(2024, 1, 2, 3, 45, tzinfo=UTC)

Signal = tuple[int, int, str, int, float, dict[str, float]]
"""(tick index, instrument token, side, quantity, confidence, metadata)."""


class ConformanceError(AlphaPandaError):
    """A strategy breaks one of the framework's assumptions; the message names the check."""


@dataclass(frozen=True)
class ConformanceReport:
    """What :func:`check_strategy` measured.

    ``signals``: the edge-triggered decisions over the ticks.
    ``state_bytes``: pickled state per instrument token at the end, in bytes.
    ``batch_step``: whether the class has its own ``on_prices``.
    ``pipeline_messages``: messages the pipeline published (same under 1 and 2 workers).
    """

    strategy_type: str
    signals: list[Signal]
    state_bytes: dict[int, int]
    batch_step: bool
    pipeline_messages: int

    @property
    def max_state_bytes(self) -> int:
        """The largest pickled state of one instrument, in bytes."""
        return max(self.state_bytes.values(), default=0)


def strategy_type_of(cls: type) -> str:
    """The ``package.module:ClassName`` that names ``cls`` in a configuration row."""
    return f"{cls.__module__}:{cls.__qualname__}"


def _signal(index: int, token: int, decision: Decision) -> Signal:
    return (index, token, decision.side, decision.quantity, decision.confidence, dict(decision.metadata))


def _run(
    logic: EdgeTriggered[Any], ticks: Sequence[tuple[int, float]], states: dict[int, Any], offset: int = 0
) -> list[Signal]:
    out = []
    for index, (token, price) in enumerate(ticks, start=offset):
        state = states.get(token)
        if state is None:
            state = states[token] = logic.new_state()
        decision = logic.on_price(state, price)
        if decision is not None:
            out.append(_signal(index, token, decision))
    return out


def _fail(cls: type, check: str, detail: str) -> ConformanceError:
    return ConformanceError(f"{cls.__qualname__} fails '{check}': {detail}")


def _check_snapshot(
    logic_for: Callable[[], EdgeTriggered[Any]],
    cls: type,
    ticks: Sequence[tuple[int, float]],
    whole: list[Signal],
) -> None:
    half = len(ticks) // 2
    logic = logic_for()
    live: dict[int, Any] = {}
    first = _run(logic, ticks[:half], live)
    snapshot = {token: copy_state(state) for token, state in live.items()}
    frozen = pickle.dumps(snapshot)
    rest = _run(logic, ticks[half:], live, half)
    if first + rest != whole:
        raise _fail(cls, "snapshot", "copying the state mid-stream changed the live run's decisions")
    if pickle.dumps(snapshot) != frozen:
        raise _fail(
            cls, "snapshot", "running on after copy_state() changed the copy (the copy aliases live state)"
        )
    restored = pickle.loads(frozen)  # noqa: S301 - bytes this function just made
    if _run(logic_for(), ticks[half:], restored, half) != rest:
        raise _fail(cls, "snapshot", f"a state restored at tick {half} gives different decisions afterwards")


def _check_batch(
    logic: EdgeTriggered[Any], cls: type, ticks: Sequence[tuple[int, float]], whole: list[Signal]
) -> None:
    by_token: dict[int, list[tuple[int, float]]] = {}
    for index, (token, price) in enumerate(ticks):
        by_token.setdefault(token, []).append((index, price))
    batched: list[Signal] = []
    for token, seen in by_token.items():
        decisions = logic.on_prices(logic.new_state(), [price for _, price in seen])
        if len(decisions) != len(seen):
            raise _fail(cls, "batch step", f"on_prices gave {len(decisions)} results for {len(seen)} prices")
        batched += [_signal(i, token, d) for (i, _), d in zip(seen, decisions, strict=True) if d is not None]
    if sorted(batched, key=lambda s: s[0]) != whole:
        raise _fail(cls, "batch step", "on_prices gives other decisions than on_price one price at a time")


def _lines(ticks: Sequence[tuple[int, float]]) -> list[bytes]:
    return [
        orjson.dumps(
            {
                "type": "market_tick",
                "data": {
                    "instrument_token": token,
                    "last_price": price,
                    "timestamp": (START + timedelta(seconds=i)).isoformat(),
                },
            }
        )
        for i, (token, price) in enumerate(ticks)
    ]


def _pipeline(lines: list[bytes], config: StrategyConfig, workers: int) -> list[Outbound]:
    batches = [
        RawBatch("market.ticks", lines[i : i + 64], list(range(i, min(i + 64, len(lines)))))
        for i in range(0, len(lines), 64)
    ]
    flow = Dataflow("conformance")
    raw = op.input("ticks", flow, TestingSource(batches))
    out: list[list[Outbound]] = []
    published = build_pipeline(
        raw, [config], PipelineParams(brokers=("paper",)), clock=event_time_clock, dlq_clock=lambda _m: START
    )
    op.output("out", published, TestingSink(out))
    if workers == 1:
        run_main(flow)
    else:
        cluster_main(flow, [], 0, worker_count_per_proc=workers)
    return [message for batch in out for message in batch]


def _check_workers(
    cls: type, config: StrategyConfig, ticks: Sequence[tuple[int, float]], whole: list[Signal]
) -> int:
    lines = _lines(ticks)
    one = _pipeline(lines, config, 1)
    two = _pipeline(lines, config, 2)
    fingerprint = Counter((o.topic, o.key, encode(o.envelope)) for o in one)
    if fingerprint != Counter((o.topic, o.key, encode(o.envelope)) for o in two):
        raise _fail(
            cls, "two workers", "the pipeline publishes other messages under two workers than under one"
        )
    published = sorted(
        (o.envelope.data.timestamp, o.envelope.data.instrument_token, o.envelope.data.signal_type)
        for o in one
        if o.topic == "paper.signals.raw"
    )
    expected = sorted((START + timedelta(seconds=s[0]), s[1], s[2]) for s in whole)
    if published != expected:
        raise _fail(
            cls,
            "two workers",
            f"the pipeline published {len(published)} signals, the strategy made {len(expected)}",
        )
    return len(one)


def check_strategy(
    cls: type,
    params: Mapping[str, Any],
    ticks: Sequence[tuple[int, float]],
    *,
    max_state_bytes: int = 16_384,
    strategy_type: str | None = None,
) -> ConformanceReport:
    """Run every check on strategy class ``cls`` with ``params`` over ``ticks``; return the measurements.

    ``strategy_type`` is how a configuration row names the class (default
    ``package.module:ClassName``; pass ``"momentum"`` or an entry point's
    name to check that lookup too).

    Raises:
        ConformanceError: naming the failed check.
        ConfigError: ``cls`` is not a strategy class, or ``params`` are invalid.
    """
    check_interface(cls, cls.__qualname__)
    config = config_from_parameters(cls.config_type, params)  # type: ignore[attr-defined]

    def logic_for() -> EdgeTriggered[Any]:
        return run_strategy(cls, config)

    states: dict[int, Any] = {}
    whole = _run(logic_for(), ticks, states)
    if _run(logic_for(), ticks, {}) != whole:
        raise _fail(cls, "deterministic", "two runs over the same ticks gave different decisions")
    if not whole:
        raise _fail(cls, "deterministic", "no signal at all over the ticks: they prove nothing")
    _check_snapshot(logic_for, cls, ticks, whole)
    sizes = {token: len(pickle.dumps(state)) for token, state in states.items()}
    too_big = {token: size for token, size in sizes.items() if size > max_state_bytes}
    if too_big:
        raise _fail(cls, "small state", f"pickled state over {max_state_bytes} bytes: {too_big}")
    _check_batch(logic_for(), cls, ticks, whole)
    name = strategy_type or strategy_type_of(cls)
    row = StrategyConfig.from_mapping(
        {
            "id": "conformance",
            "strategy_type": name,
            "instruments": sorted(states),
            "parameters": dict(params),
        }
    )
    messages = _check_workers(cls, row, ticks, whole)
    return ConformanceReport(name, whole, sizes, callable(getattr(cls, "on_prices", None)), messages)
