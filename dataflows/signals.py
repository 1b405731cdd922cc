"""The strategy stage: per-instrument windows, signals and price marks.

In: tick envelopes (and, for hot reload, new strategy sets). Out:
``(account_id, SignalEnvelope | Mark)`` pairs for the account stages.

State is partitioned into *shards of strategies*: every tick goes to every
shard, and each strategy lives in exactly one shard (a stable hash of its
id). So each account sees its instruments' ticks in source order whichever
worker hosts its shard, and outputs do not depend on the worker count. With
one shard (the default) there is no fan-out at all.

Marks carry the latest price to risk and portfolio; they are throttled to
one per ``mark_interval`` of event time per instrument, plus one at end of
input so that final portfolios are marked to the last tick.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import bytewax.operators as op
from bytewax.dataflow import Stream
from bytewax.operators import StatefulLogic

from dataflows.account_steps import Mark, account_id
from dataflows.clock import Clock
from dataflows.metrics import snapshot_timer
from dataflows.tick_time import Stamped, carrying, stamp_signal
from operators.strategy import InstrumentState, InstrumentStrategies, StrategyConfig
from schemas.envelope import TickEnvelope, envelop, event_id, with_tick_id
from schemas.events import TradingSignal
from schemas.topics import signal_key


def shard_of(strategy_id: str, shards: int) -> int:
    """Stable shard of a strategy (crc32, the same in every process)."""
    return zlib.crc32(strategy_id.encode("utf-8")) % shards


@dataclass(frozen=True)
class SignalContext:
    """What the strategy stage shares: strategies, brokers, routing, clock."""

    configs: tuple[StrategyConfig, ...]
    brokers: tuple[str, ...]
    mark_interval: timedelta
    clock: Clock
    service: str
    shards: int = 1
    emit_signals: bool = True
    idle_mark_after: timedelta | None = None
    """Live flows: mark a tick left unmarked this long (wall clock); None in replays."""
    _cache: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)

    def with_configs(self, configs: Sequence[StrategyConfig]) -> SignalContext:
        """Return this context with a new strategy set (hot reload)."""
        return replace(self, configs=tuple(c for c in configs if c.is_active), _cache={})

    def strategies(self, shard: int) -> InstrumentStrategies:
        """The active strategies of ``shard``."""
        key = ("strategies", shard)
        if key not in self._cache:
            mine = [c for c in self.configs if shard_of(c.id, self.shards) == shard]
            self._cache[key] = InstrumentStrategies(mine)
        return self._cache[key]  # type: ignore[no-any-return]

    def accounts_for(self, shard: int, token: int) -> tuple[str, ...]:
        """Account ids (``broker:strategy``) of ``shard`` that trade ``token``."""
        key = (shard, token)
        accounts = self._cache.get(key)
        if accounts is None:
            accounts = tuple(
                account_id(broker, config.id)
                for config in self.strategies(shard).strategies_for(token)
                for broker in config.brokers(self.brokers)
            )
            self._cache[key] = accounts
        return accounts


class ContextUpdate(NamedTuple):
    """A new strategy set for one shard (hot reload)."""

    shard: int
    context: SignalContext


@dataclass
class InstrumentSnapshot:
    """Recoverable state of one instrument in one shard."""

    strategies: InstrumentState
    last_mark_at: datetime | None = None
    last_tick: TickEnvelope | None = None
    last_tick_marked: bool = True

    def copy(self) -> InstrumentSnapshot:
        """Deep copy: the tick is immutable, the windows are copied."""
        return InstrumentSnapshot(
            self.strategies.copy(), self.last_mark_at, self.last_tick, self.last_tick_marked
        )


class ShardTick(NamedTuple):
    """A tick on its way to one shard (only when there are several)."""

    shard: int
    tick: TickEnvelope


@dataclass
class ShardSnapshot:
    """Recoverable state of a shard: its index and its instruments."""

    shard: int
    instruments: dict[int, InstrumentSnapshot]


class _ShardLogic(StatefulLogic[Any, tuple[str, Any], ShardSnapshot]):
    """One shard: the windows of its strategies for every instrument they trade."""

    def __init__(self, context: SignalContext, resume: ShardSnapshot | None) -> None:
        self._shard = resume.shard if resume else 0
        self._ctx = context
        self._strategies = context.strategies(self._shard)
        restored = resume.instruments if resume else {}
        self._instruments = {token: state.copy() for token, state in restored.items()}
        self._idle_mark_at: datetime | None = None
        self._accounts: dict[int, tuple[str, ...]] = {}
        # Snapshots copy only instruments touched since the last one: a shard
        # may hold thousands, and Bytewax snapshots it every epoch.
        self._frozen: dict[int, InstrumentSnapshot] = dict(restored)
        self._dirty: set[int] = set()
        if context.idle_mark_after is not None and any(not s.last_tick_marked for s in restored.values()):
            # Resumed with unmarked ticks: mark them after a quiet spell, as before the restart.
            self._idle_mark_at = datetime.now(UTC) + context.idle_mark_after

    def _join_shard(self, shard: int) -> None:
        # A new logic learns its shard from its first item (builders see no key).
        if shard != self._shard and not self._instruments:
            self._shard = shard
            self._strategies = self._ctx.strategies(shard)
            self._accounts.clear()

    def _marks(self, tick: TickEnvelope) -> list[tuple[str, Any]]:
        tick = with_tick_id(tick)
        data = tick.data
        token = data.instrument_token
        accounts = self._accounts.get(token)
        if accounts is None:
            accounts = self._accounts[token] = self._ctx.accounts_for(self._shard, token)
        return [
            (
                account,
                Mark(
                    account,
                    data.instrument_token,
                    data.last_price,
                    data.timestamp,
                    tick.id,
                    tick.correlation_id,
                ),
            )
            for account in accounts
        ]

    def _on_tick(self, tick: TickEnvelope) -> list[tuple[str, Any]]:
        data = tick.data
        token = data.instrument_token
        if not self._strategies.strategies_for(token):
            return []
        ctx = self._ctx
        state = self._instruments.get(token)
        if state is None:
            state = self._instruments[token] = InstrumentSnapshot(self._strategies.new_state())
        self._dirty.add(token)
        out: list[tuple[str, Any]] = []
        last = state.last_mark_at
        state.last_tick = tick
        if last is None or data.timestamp - last >= ctx.mark_interval:
            out += self._marks(tick)
            state.last_mark_at = data.timestamp
            state.last_tick_marked = True
        else:
            state.last_tick_marked = False
            if ctx.idle_mark_after is not None and self._idle_mark_at is None:
                self._idle_mark_at = datetime.now(UTC) + ctx.idle_mark_after
        if not ctx.emit_signals:
            return out
        for config, decision in self._strategies.on_price(state.strategies, token, data.last_price):
            tick = with_tick_id(tick)  # ids are derived only for ticks that cause events
            signal = TradingSignal(
                strategy_id=config.id,
                instrument_token=token,
                signal_type=decision.side,
                quantity=decision.quantity,
                price=data.last_price,
                timestamp=data.timestamp,
                confidence=decision.confidence,
                metadata=decision.metadata,
            )
            for broker in config.brokers(ctx.brokers):
                envelope = envelop(
                    signal,
                    id=event_id("trading_signal", broker, config.id, tick.id),
                    ts=ctx.clock(data.timestamp),
                    broker=broker,  # type: ignore[arg-type]
                    cause=tick,
                    source=f"{ctx.service}.strategies",
                    key=signal_key(config.id, token),
                )
                out.append((account_id(broker, config.id), envelope))
        return out

    def _reload(self, context: SignalContext) -> None:
        self._ctx = context
        self._strategies = context.strategies(self._shard)
        self._accounts.clear()
        for token, state in list(self._instruments.items()):
            self._strategies.reconcile(state.strategies, token)
            self._dirty.add(token)
            if not self._strategies.strategies_for(token):
                del self._instruments[token]
                self._frozen.pop(token, None)
                self._dirty.discard(token)

    def on_item(self, value: Any) -> tuple[Iterable[tuple[str, Any]], bool]:
        if isinstance(value, ShardTick):
            self._join_shard(value.shard)
            return self._on_tick(value.tick), StatefulLogic.RETAIN
        if isinstance(value, ContextUpdate):
            self._join_shard(value.shard)
            self._reload(value.context)
            return (), StatefulLogic.RETAIN
        return self._on_tick(value), StatefulLogic.RETAIN

    def _mark_unmarked(self) -> list[tuple[str, Any]]:
        self._idle_mark_at = None
        out: list[tuple[str, Any]] = []
        for token in sorted(self._instruments):
            state = self._instruments[token]
            if state.last_tick is not None and not state.last_tick_marked:
                state.last_tick_marked = True
                self._dirty.add(token)
                out += self._marks(state.last_tick)
        return out

    def on_eof(self) -> tuple[Iterable[tuple[str, Any]], bool]:
        return self._mark_unmarked(), StatefulLogic.RETAIN

    def notify_at(self) -> datetime | None:
        return self._idle_mark_at

    def on_notify(self) -> tuple[Iterable[tuple[str, Any]], bool]:
        # A quiet market: bring the books to the latest tick without waiting
        # for the next one (live flows only; replays mark at end of input).
        return self._mark_unmarked(), StatefulLogic.RETAIN

    def snapshot(self) -> ShardSnapshot:
        with snapshot_timer("strategies").time():
            for token in self._dirty:
                self._frozen[token] = self._instruments[token].copy()
            self._dirty.clear()
            return ShardSnapshot(self._shard, dict(self._frozen))


def _to_shard(shard: int, tick: Any) -> ShardTick | Stamped:
    if type(tick) is Stamped:
        return Stamped(ShardTick(shard, tick.item), tick.tick_created_ms)
    return ShardTick(shard, tick)


def context_for(configs: Sequence[StrategyConfig], **kwargs: Any) -> SignalContext:
    """Build a :class:`SignalContext` over the active strategies in ``configs``."""
    return SignalContext(configs=tuple(c for c in configs if c.is_active), **kwargs)


def strategy_stage(
    step_id: str,
    ticks: Stream[TickEnvelope],
    context: SignalContext,
    *,
    updates: Stream[SignalContext] | None = None,
) -> Stream[tuple[str, Any]]:
    """Run every strategy on every tick of its instruments; route to accounts.

    In: tick envelopes; optionally whole new contexts (hot reload), which
    keep the windows of unchanged strategies. Out: ``(account_id,
    SignalEnvelope | Mark)``, each account's items in source order. A
    :class:`dataflows.tick_time.Stamped` tick's signals come out stamped
    with its Kafka create time (marks never are).
    """
    shards = range(context.shards)
    keyed: Stream[tuple[str, Any]]
    if context.shards == 1:
        keyed = op.key_on(f"{step_id}_to_shard", ticks, lambda _t: "0")
    else:
        keyed = op.flat_map(
            f"{step_id}_to_shards", ticks, lambda t: [(str(i), _to_shard(i, t)) for i in shards]
        )
    if updates is not None:
        fanned = op.flat_map(
            f"{step_id}_updates_to_shards", updates, lambda c: [(str(i), ContextUpdate(i, c)) for i in shards]
        )
        keyed = op.merge(f"{step_id}_with_updates", keyed, fanned)
    routed = op.stateful(
        f"{step_id}_strategies",
        keyed,
        lambda resume: carrying(_ShardLogic(context, resume), stamp_signal),
    )
    return op.key_rm(f"{step_id}_unkey", routed)
