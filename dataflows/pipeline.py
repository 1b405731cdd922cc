"""Every stage in one flow: ticks -> strategies -> risk -> execution -> portfolio.

``build_pipeline`` is the wiring shared by the replay flow and the live
all-in-one flow: batches of raw tick messages in, lists of
:class:`schemas.envelope.Outbound` out (every stage's events, both brokers,
dead letters included), one list per input batch. Sinks are attached by the
caller. The per-tick work is :class:`operators.shard.TradingShard`; this
module only wires it.

``PipelineParams(accounts_apart=True)`` (``alpha-panda replay --processes
2``) runs the shard's accounts as a step of their own on a second worker:
the shard records what it asks of its books (:mod:`operators.account_calls`)
and the accounts step applies it there, so the messages are the same.

``python -m bytewax.run dataflows.pipeline`` runs the live flow (Kafka in,
Kafka/Redis/Postgres out); the module attribute ``flow`` is built on first
access so that importing this module reads no settings.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, NamedTuple

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream
from bytewax.operators import StatefulLogic

from connectors.files import JsonlTopicSink, OutputCounts, ProgressCallback, TickFileSource
from dataflows.clock import Clock, event_time_clock
from dataflows.idle_flush import FlushesWhenIdle
from dataflows.ingest import dead_tick
from dataflows.instrument_groups import grouped_trading
from dataflows.metrics import DLQ_MESSAGES, observe_batch_create_latency, snapshot_timer
from dataflows.params import PipelineParams
from dataflows.placement import worker_key
from dataflows.runtime.backlog import Backlog, GatedSource
from dataflows.runtime.failures import NotingSink, NotingSource, noting
from dataflows.unrecovered import WithoutSnapshots, logic_builder
from operators.account_books import AccountBooks
from operators.account_calls import AccountCall, RemoteBooks
from operators.errors import ConfigError
from operators.shard import ShardState, TradingShard
from operators.strategy import InstrumentStrategies, StrategyConfig
from schemas.codec import RawBatch, TimeCache, decode_tick_batch
from schemas.envelope import FailedEnvelope, FilledEnvelope, Outbound, Published
from schemas.topics import MARKET_TICKS


def shard_of(strategy_id: str, shards: int) -> int:
    """Stable shard of a strategy (crc32, the same in every process)."""
    return zlib.crc32(strategy_id.encode("utf-8")) % shards


class DecodedTicks(NamedTuple):
    """The good ticks of one raw batch, with where each came from."""

    ticks: list[Any]
    times: list[datetime]
    raw: RawBatch
    positions: list[int]


class _Origins:
    """``origins[i]``: (topic, key, value, partition, offset) of decoded tick ``i``, on demand."""

    def __init__(self, decoded: DecodedTicks) -> None:
        self._decoded = decoded

    def __len__(self) -> int:
        return len(self._decoded.positions)

    def __getitem__(self, i: int) -> tuple[Any, ...]:
        message = self._decoded.raw.message(self._decoded.positions[i])
        return (message.topic, message.key, message.value, message.partition, message.offset)


class ShardItem(NamedTuple):
    """Work for one shard: decoded ticks, a new strategy set (hot reload), or a live order's update."""

    shard: int
    ticks: DecodedTicks | None = None
    configs: tuple[StrategyConfig, ...] | None = None
    update: FilledEnvelope | FailedEnvelope | None = None


class _ShardLogic(FlushesWhenIdle, StatefulLogic[ShardItem, list[Outbound], ShardState]):
    """Bytewax glue around one :class:`TradingShard`: a batch in, a list of messages out."""

    def __init__(
        self,
        build: Callable[[int, ShardState | None], TradingShard],
        resume: tuple[int, ShardState] | None,
        idle_after: timedelta | None,
    ) -> None:
        self._build = build
        self._index = resume[0] if resume is not None else 0
        self._shard: TradingShard | None = build(*resume) if resume is not None else None
        self._idle_after = idle_after
        self._flush_at: datetime | None = None

    def _for(self, shard: int) -> TradingShard:
        if self._shard is None:
            self._shard = self._build(shard, None)
        return self._shard

    def on_item(self, value: ShardItem) -> tuple[Iterable[list[Outbound]], bool]:
        self._index = value.shard
        shard = self._for(value.shard)
        if value.configs is not None:
            shard.reload(value.configs)
            return (), StatefulLogic.RETAIN
        if value.update is not None:
            out = shard.on_order_update(value.update)
            for letter in out:
                DLQ_MESSAGES.labels(letter.topic, value.update.broker, "business").inc()
            return ((out,) if out else ()), StatefulLogic.RETAIN
        assert value.ticks is not None  # noqa: S101 - ShardItem carries one or the other
        ticks = value.ticks
        out = shard.on_batch(ticks.ticks, ticks.times, _Origins(ticks))
        observe_batch_create_latency(out, ticks.ticks, ticks.times, ticks.positions, ticks.raw.timestamps)
        return ((out,) if out else ()), StatefulLogic.RETAIN

    def _idle_flush(self) -> list[Outbound]:
        """A quiet spell is not the end of input: ticks held beyond the skew stay held."""
        return self._shard.flush(end_of_input=False) if self._shard is not None else []

    def snapshot(self) -> Any:
        assert self._shard is not None  # noqa: S101 - Bytewax snapshots only logics that saw an item
        with snapshot_timer("trading").time():
            return (self._index, self._shard.snapshot())


def build_pipeline(
    raw_ticks: Stream[RawBatch],
    configs: Sequence[StrategyConfig],
    params: PipelineParams,
    *,
    clock: Clock,
    dlq_clock: Callable[[Any], datetime],
    config_updates: Stream[Sequence[StrategyConfig]] | None = None,
    order_updates: Stream[FilledEnvelope | FailedEnvelope] | None = None,
    backlog: Backlog | None = None,
) -> Stream[list[Outbound]]:
    """Wire every stage; return every published message, a list per input batch.

    ``params.accounts_apart``: the accounts as a step of their own on worker
    1, throttled by ``backlog``, which the caller's source must wait on.

    ``params.groups > 1`` splits the trading part by instrument group
    (:func:`dataflows.instrument_groups.grouped_trading`): a list per step an
    account shard runs; the messages are the same.

    In: raw ``market.ticks`` batches, optionally new strategy sets (hot
    reload) and optionally the broker's later fills and failures of live
    orders (``order_updates``, routed to the shard of their strategy: see
    :meth:`TradingShard.on_order_update`; one instrument group only). Out:
    signals, validated and rejected signals,
    submitted/filled/failed orders and P&L snapshots on each broker's
    topics, and dead letters on ``market.ticks.dlq``.

    Raises:
        ConfigError: a strategy set the shards cannot run (e.g. a
            duplicated id), before the flow starts.
    """
    InstrumentStrategies([c for c in configs if c.is_active])  # fail fast on a bad set
    if params.accounts_apart:
        if order_updates is not None or not params.one_shard or params.idle_mark_after is not None:
            msg = (
                "accounts apart (replay --processes 2) take one trading shard and one instrument "
                "group, no live order updates and no idle flush"
            )
            raise ConfigError(msg)
        if backlog is None:
            msg = "accounts apart need the backlog their source waits on"
            raise ConfigError(msg)
        return _accounts_apart(raw_ticks, configs, params, clock=clock, dlq_clock=dlq_clock, backlog=backlog)
    if params.groups > 1:
        if order_updates is not None:
            msg = (
                "INSTRUMENT_GROUPS > 1 cannot yet apply live Zerodha order updates; "
                "run the live Zerodha route with INSTRUMENT_GROUPS=1"
            )
            raise ConfigError(msg)
        return grouped_trading(
            raw_ticks, configs, params, clock=clock, dlq_clock=dlq_clock, config_updates=config_updates
        )
    shards = max(1, params.shards)

    def mine(shard: int, strategy_set: Iterable[StrategyConfig]) -> list[StrategyConfig]:
        return [c for c in strategy_set if shard_of(c.id, shards) == shard]

    build = _shard_builder(lambda shard: mine(shard, configs), params, clock)

    split = _decoded(raw_ticks, params, dlq_clock)
    keyed = op.flat_map(
        "to_shards", split.trues, lambda ticks: [(str(i), ShardItem(i, ticks)) for i in range(shards)]
    )
    if config_updates is not None:
        reloads = op.flat_map(
            "reloads_to_shards",
            config_updates,
            lambda new: [(str(i), ShardItem(i, configs=tuple(mine(i, new)))) for i in range(shards)],
        )
        keyed = op.merge("shard_work", keyed, reloads)
    if order_updates is not None:

        def to_shard(update: FilledEnvelope | FailedEnvelope) -> tuple[str, ShardItem]:
            shard = shard_of(update.data.strategy_id, shards)
            return str(shard), ShardItem(shard, update=update)

        keyed = op.merge("shard_work_and_orders", keyed, op.map("orders_to_shards", order_updates, to_shard))
    published = op.key_rm(
        "unkey",
        op.stateful(
            "trading",
            keyed,
            logic_builder(
                lambda resume: _ShardLogic(build, resume, params.idle_mark_after),
                recoverable=params.recoverable,
            ),
        ),
    )
    return op.merge("published", published, split.falses)


def _shard_builder(
    configs_of: Callable[[int], list[StrategyConfig]],
    params: PipelineParams,
    clock: Clock,
    *,
    accounts_apart: bool = False,
) -> Callable[[int, ShardState | None], TradingShard]:
    """How a trading step builds shard ``i`` (over ``configs_of(i)``), afresh or from a saved state."""
    risk, portfolio, execute = params.trading_collaborators(clock)
    shard_config = params.shard_config()

    def build(shard: int, state: ShardState | None) -> TradingShard:
        return TradingShard(
            configs_of(shard),
            shard_config,
            risk,
            portfolio,
            execute,
            clock,
            state,
            emit_dead_letters=shard == 0,
            halts=params.halts,
            accounts_apart=accounts_apart,
        )

    return build


def _decoded(
    raw_ticks: Stream[RawBatch], params: PipelineParams, dlq_clock: Callable[[Any], datetime]
) -> op.BranchOut[Any, Any]:
    """Raw batches decoded: ``trues`` the :class:`DecodedTicks`, ``falses`` lists of dead letters."""
    times = TimeCache(params.naive_tz)

    def decode(batch: RawBatch) -> list[Any]:
        decoded = decode_tick_batch(batch.values, times)
        items: list[Any] = []
        if decoded.ticks:
            items.append(DecodedTicks(decoded.ticks, decoded.times, batch, decoded.positions))
        if decoded.failed:
            items.append(
                [dead_tick(batch.message(i), err, params.service, dlq_clock) for i, err in decoded.failed]
            )
        return items

    parts = op.flat_map("ingest_decode", raw_ticks, decode)
    return op.branch("ingest_ok", parts, lambda item: isinstance(item, DecodedTicks))


class Calls(NamedTuple):
    """What a trading shard asked of its books during one step, for the accounts step (accounts apart)."""

    calls: list[AccountCall]


class _ApartShardLogic(_ShardLogic):
    """:class:`_ShardLogic` whose shard records its book calls: its dead letters, then its :class:`Calls`.

    Every step hands over one :class:`Calls`, empty or not, counted in ``backlog``.
    """

    def __init__(self, build: Callable[[int, ShardState | None], TradingShard], backlog: Backlog) -> None:
        super().__init__(build, None, None)
        self._backlog = backlog

    def on_item(self, value: ShardItem) -> tuple[Iterable[Any], bool]:
        out, retain = super().on_item(value)
        return self._with_calls(out), retain

    def on_eof(self) -> tuple[Iterable[Any], bool]:
        out, retain = super().on_eof()
        return self._with_calls(out), retain

    def _with_calls(self, out: Iterable[Any]) -> list[Any]:
        items = list(out)
        items.append(Calls(self._shard.take_calls() if self._shard is not None else []))
        self._backlog.hand_over()
        return items


class _RemoteBooksLogic(StatefulLogic[Calls, list[Outbound], None]):
    """The accounts step (accounts apart): a shard's recorded book calls in, what the books publish out."""

    def __init__(self, books: RemoteBooks, backlog: Backlog) -> None:
        self._books = books
        self._backlog = backlog

    def on_item(self, value: Calls) -> tuple[Iterable[list[Outbound]], bool]:
        out = self._books.apply(value.calls)
        self._backlog.finish_one()
        return ((out,) if out else ()), StatefulLogic.RETAIN

    def snapshot(self) -> None:
        return None  # only replays run accounts apart, and they never resume


ACCOUNTS_WORKER: Final = 1
"""The worker of the accounts step (and of every message) when the accounts are apart."""


def _accounts_apart(
    raw_ticks: Stream[RawBatch],
    configs: Sequence[StrategyConfig],
    params: PipelineParams,
    *,
    clock: Clock,
    dlq_clock: Callable[[Any], datetime],
    backlog: Backlog,
) -> Stream[list[Outbound]]:
    """The one-shard pipeline with its accounts as a step of their own, on another worker.

    The shard (decode, time order, strategies) runs on worker 0 and records
    every call on its books (:mod:`operators.account_calls`); worker 1
    applies them, in order, to the real books. The messages are those of
    the one-shard flow: every topic in the same order. ``backlog`` counts
    the steps handed over and done; the flow's source waits on it.
    """
    active = [c for c in configs if c.is_active]
    trading_key = worker_key("trading", 0)
    accounts_key = worker_key("accounts", ACCOUNTS_WORKER)
    build = _shard_builder(lambda _shard: active, params, clock, accounts_apart=True)

    split = _decoded(raw_ticks, params, dlq_clock)
    keyed = op.map("to_shard", split.trues, lambda ticks: (trading_key, ShardItem(0, ticks)))
    traded = op.key_rm(
        "unkey",
        op.stateful("trading", keyed, noting(lambda _r: WithoutSnapshots(_ApartShardLogic(build, backlog)))),
    )
    calls = op.branch("calls_or_letters", traded, lambda item: isinstance(item, Calls))

    def books(_resume: None) -> _RemoteBooksLogic:
        risk, portfolio, execute = params.trading_collaborators(clock)
        accounts = AccountBooks(
            params.shard_config(), risk, portfolio, execute, clock, {}, halts=params.halts
        )
        return _RemoteBooksLogic(RemoteBooks(accounts), backlog)

    booked = op.key_rm(
        "accounts_unkey",
        op.stateful(
            "accounts", op.key_on("to_accounts", calls.trues, lambda _c: accounts_key), noting(books)
        ),
    )
    # Dead letters of ticks join the accounts' messages on worker 1, the one worker that writes.
    letters = op.merge("letters", calls.falses, split.falses)
    moved = op.key_rm(
        "letters_unkey",
        op.stateful(
            "letters_to_writer", op.key_on("to_writer", letters, lambda _l: accounts_key), noting(_Pass)
        ),
    )
    return op.merge("published", booked, moved)


class _Pass(StatefulLogic[Any, Any, None]):
    """Items through unchanged: a keyed step only to bring them to the worker of their key."""

    def __init__(self, _resume: None) -> None:
        pass

    def on_item(self, value: Any) -> tuple[Iterable[Any], bool]:
        return (value,), StatefulLogic.RETAIN

    def snapshot(self) -> None:
        return None


def _replay_dlq_clock(msg: Any) -> datetime:
    # Dead letters of a replay are stamped with a fixed time so that two runs
    # over the same file are byte-identical.
    return datetime(1970, 1, 1, tzinfo=UTC)


def replay_flow(
    ticks_path: Path,
    configs: Sequence[StrategyConfig],
    out_dir: Path,
    params: PipelineParams | None = None,
    *,
    on_progress: ProgressCallback | None = None,
    batch_size: int = 4096,
    counts: OutputCounts | None = None,
    backlog: Backlog | None = None,
) -> Dataflow:
    """The no-server flow: a tick file in, ``out_dir/<topic>.jsonl`` out (tallied in ``counts``).

    With ``params.accounts_apart`` (two workers, two processes), worker 1
    writes every file, the source waits on ``backlog`` (one is made if
    none is given: build it before a fork so both processes share it), and
    the steps note their errors (:mod:`dataflows.runtime.failures`).
    """
    flow = Dataflow("alpha_panda_replay")
    params = params or PipelineParams()
    source: Any = TickFileSource(ticks_path, batch_size=batch_size, on_progress=on_progress, tally=counts)
    sink: Any = JsonlTopicSink(out_dir, counts)
    if params.accounts_apart:
        backlog = backlog if backlog is not None else Backlog()
        source = NotingSource(GatedSource(source, backlog))
        sink = NotingSink(JsonlTopicSink(out_dir, counts, writer=ACCOUNTS_WORKER))
    raw = op.input("ticks", flow, source)
    # A replay never resumes: its stateful steps need not copy their state at epoch closes.
    params = dataclasses.replace(params, recoverable=False)
    out = build_pipeline(
        raw, configs, params, clock=event_time_clock, dlq_clock=_replay_dlq_clock, backlog=backlog
    )
    op.output("topics", out, sink)
    return flow


def live_flow(settings: Any) -> Dataflow:
    """All stages in one flow: ``market.ticks`` in; every topic, Redis and the ledger out.

    Strategies load from Postgres and reload when ``strategy_configurations``
    changes. Envelopes are stamped with wall-clock creation time. With live
    Zerodha orders (credentials and ``ZERODHA_LIVE_TRADING=true``) it also
    reads ``zerodha.orders.filled`` and ``zerodha.orders.failed``: real
    fills move the Zerodha books, failures release what risk booked.
    """
    from dataflows import live  # live imports settings-dependent connectors
    from dataflows.clock import wall_clock

    servers, params, flow = live.begin(settings, "pipeline", redis=True)
    configs = live.config_source(
        servers, settings
    )  # polled in the tick input step: see connectors.merged_source
    raw, rows = live.kafka_batches(
        flow, "market_ticks", servers, [MARKET_TICKS], tail=settings.kafka_tail, also=configs
    )
    updates = dead_updates = None
    if params.zerodha_route is not None and params.zerodha_route.mode == "live":
        # Live Kite orders fill (or fail) later: their updates come back from dataflows.zerodha_updates.
        from dataflows.zerodha import order_updates

        updates, dead_updates = order_updates(flow, servers, settings, params.service)
    batches = build_pipeline(
        raw,
        live.initial_configs(servers),
        params,
        clock=wall_clock,
        dlq_clock=live.live_dlq_clock,
        config_updates=live.config_updates(rows),
        order_updates=updates,
    )
    published: Stream[Published] = batches  # each batch one item, all the way to the sinks
    if dead_updates is not None:
        published = op.merge("messages_and_update_dlq", published, dead_updates)
    live.attach_sinks(published, servers, redis=True, ledger=True)
    return flow


def __getattr__(name: str) -> Any:
    # `python -m bytewax.run dataflows.pipeline` looks up `flow`; build it
    # only then, so the replay path never imports the live connectors (any
    # other name, e.g. the `__path__` an import asks for, fails at once).
    if name != "flow":
        msg = f"module {__name__!r} has no attribute {name!r}"
        raise AttributeError(msg)
    from dataflows.live import lazy_flow

    return lazy_flow(__name__, live_flow)(name)
