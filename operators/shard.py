"""A trading shard: strategies, risk, execution and books over batches of ticks.

The batch-native hot path of the replay and live all-in-one flows. A shard
owns a set of strategies and every account (strategy x broker) they trade,
so one account's risk decisions, orders and fills are applied in exactly the
order its ticks arrived, whichever worker hosts the shard. Work is paid per
batch: the engine hands over one batch of decoded ticks and gets back one
list of outbound messages.

Per tick: the instrument's occurrence count (tick identity), its latest
price (which risk and the books read directly: no mark messages), and every
strategy trading it. Per signal: a risk decision, execution (injected) and,
for fills, the books. Per snapshot interval of event time: one P&L
snapshot of every account that changed, plus one at end of input.

Engine-free: the clock and the executor are injected.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from operators.account_books import AccountBooks, Execute
from operators.account_calls import AccountCall, RecordedBooks
from operators.decision import Decision
from operators.portfolio import Portfolio
from operators.risk import RiskFilter
from operators.shard_state import (
    CONFIRM_AFTER,
    REFUTE_AFTER,
    AccountState,
    HeldTick,
    InstrumentBook,
    Run,
    ShardConfig,
    ShardState,
    too_far_ahead,
    traded_book,
)
from operators.strategy import InstrumentStrategies, StrategyConfig
from schemas.envelope import FailedEnvelope, FilledEnvelope, Outbound
from schemas.topics import MARKET_TICKS

Clock = Callable[[datetime], datetime]

__all__ = [
    "CONFIRM_AFTER",
    "REFUTE_AFTER",
    "AccountState",
    "Execute",
    "HeldTick",
    "InstrumentBook",
    "ShardConfig",
    "ShardState",
    "TradingShard",
]


class TradingShard:
    """The logic of one shard over a :class:`ShardState`.

    In: batches of decoded producer-form ticks (``data`` a
    :class:`MarketTick` with a UTC timestamp). Out: lists of
    :class:`Outbound` for every topic (signals, decisions, orders,
    snapshots, and dead letters of ticks beyond the skew).
    """

    def __init__(
        self,
        configs: Sequence[StrategyConfig],
        config: ShardConfig,
        risk: RiskFilter,
        portfolio: Portfolio,
        execute: Execute,
        clock: Clock,
        state: ShardState | None = None,
        *,
        emit_dead_letters: bool = True,
        halts: Callable[[str, str], str | None] | None = None,
        accounts_apart: bool = False,
    ) -> None:
        self.config = config
        self._clock = clock
        self._emit_dead = emit_dead_letters
        self.state = state if state is not None else ShardState()
        self._books: AccountBooks | RecordedBooks
        if accounts_apart:
            # The books run elsewhere (operators.account_calls): their calls are recorded for take_calls.
            self._books = RecordedBooks(self.state.instruments)
        else:
            self._books = AccountBooks(
                config, risk, portfolio, execute, clock, self.state.accounts, halts=halts
            )
        self._runs: dict[int, tuple[InstrumentBook, Run]] = {}
        self._untraded: set[int] = set()
        """Tokens seen that no strategy trades, until the next reload (most feeds carry some)."""
        self.reload(configs)

    # --- configuration --------------------------------------------------------

    def reload(self, configs: Sequence[StrategyConfig]) -> None:
        """Adopt a new strategy set; unchanged strategies keep their windows."""
        active = [c for c in configs if c.is_active]
        self._strategies = InstrumentStrategies(active)
        self._runs.clear()
        self._untraded.clear()
        self._books.reload(active)
        for token, book in list(self.state.instruments.items()):
            self._strategies.reconcile(book.strategies, token)
            if not self._strategies.strategies_for(token):
                del self.state.instruments[token]

    @property
    def account_names(self) -> list[str]:
        """Every account of the shard, ``broker:strategy_id`` (none when the accounts run apart)."""
        return self._books.names if isinstance(self._books, AccountBooks) else []

    def take_calls(self) -> list[AccountCall]:
        """With the accounts apart: the calls on the books since the last take, for :class:`RemoteBooks`."""
        return self._books.take() if isinstance(self._books, RecordedBooks) else []

    # --- the hot path ---------------------------------------------------------

    def on_batch(  # noqa: C901 - the per-tick loop stays in one frame: no call per tick it can avoid
        self, ticks: Sequence[Any], times: Sequence[datetime], origins: Sequence[Any] = ()
    ) -> list[Outbound]:
        """Run one batch of ticks in order; return every message it caused.

        ``ticks[i]``: a producer-form tick (``data`` with the
        :class:`MarketTick` fields), ``times[i]`` its exchange time in UTC.
        ``origins[i]`` (optional) is where it came from, for the dead letter
        of a tick beyond the skew: ``(topic, key, value, partition, offset)``.
        """
        out: list[Outbound] = []
        state = self.state
        runs = self._runs
        skew = self.config.max_tick_skew
        # Ticks of one second share one datetime (the decoder's cache): once a time has passed the
        # checks against the newest time and the snapshot boundary, the same object passes again.
        # Not with a zero interval, where every tick is a boundary.
        recheck = not self.config.snapshot_interval
        newest = state.newest
        due = state.next_snapshot_at
        checked: datetime | None = None
        position = -1
        for tick_in, at in zip(ticks, times, strict=True):
            position += 1
            if at is not checked and (newest is None or at > newest):
                if newest is not None and at - newest > skew:
                    state.newest, state.next_snapshot_at = newest, due
                    self._hold(out, tick_in, at, origins, position)
                    newest, due, checked = state.newest, state.next_snapshot_at, None
                    continue
                newest = at
            if state.held:
                state.since_held += 1
                if state.since_held > REFUTE_AFTER:
                    self._refute(out, newest)
            if at is not checked:
                if due is None or at >= due:
                    # Before this tick: the books as of the boundary, the same in every shard.
                    state.newest = newest
                    self._snapshots(out, at)
                    due = state.next_snapshot_at
                if not recheck:
                    checked = at
            tick = tick_in.data
            token = tick.instrument_token
            price = tick.last_price
            traded = runs.get(token)
            if traded is None:
                if token in self._untraded:
                    continue
                traded = traded_book(self._strategies, state.instruments, token)
                if traded is None:
                    self._untraded.add(token)
                    continue  # valid, but no strategy trades it
                runs[token] = traded
            book, run = traded
            book.see(token, at, price, tick_in.id)
            signals = None
            for config, on_price, strategy_state in run:
                decision = on_price(strategy_state, price)
                if decision is not None:
                    if signals is None:
                        signals = []
                    signals.append((config, decision))
            if signals:
                self._on_decisions(out, tick_in, tick, at, book, signals)
        state.newest = newest
        return out

    def _on_decisions(
        self,
        out: list[Outbound],
        tick_in: Any,
        tick: Any,
        at: datetime,
        book: InstrumentBook,
        decisions: list[tuple[StrategyConfig, Decision]],
    ) -> None:
        token = tick.instrument_token
        cause = book.cause_id(token)
        correlation = tick_in.correlation_id or cause
        price = tick.last_price
        for config, decision in decisions:
            self._books.on_decision(out, config.id, token, decision, price, at, cause, correlation)

    # --- later reports of live orders -------------------------------------------

    def on_order_update(self, update: FilledEnvelope | FailedEnvelope) -> list[Outbound]:
        """Apply a broker's later report on a live order (:meth:`AccountBooks.on_order_update`)."""
        return self._books.on_order_update(update, self._price_of)

    # --- snapshots ------------------------------------------------------------

    def _price_of(self, token: int) -> float | None:
        book = self.state.instruments.get(token)
        return book.price if book is not None else None

    def _snapshots(self, out: list[Outbound], at: datetime) -> None:
        """Snapshot every account changed since its last snapshot; schedule the next round."""
        self._books.snapshots(out, at, self._price_of)
        self.state.next_snapshot_at = at + self.config.snapshot_interval

    def flush(self, *, end_of_input: bool = True) -> list[Outbound]:
        """The snapshots still owed: every account changed since its last one (end of input, quiet spell).

        At the end of input, ticks still held beyond the skew are dead-lettered.
        """
        newest = self.state.newest
        if newest is None:
            return []
        out: list[Outbound] = []
        if end_of_input and self.state.held:
            self._refute(out, newest)
        self._books.flush(out, newest, self._price_of)
        return out

    @property
    def has_pending(self) -> bool:
        """Whether some account changed, or holds positions marked, since its last snapshot."""
        return self._books.has_pending(self.state.newest)

    def snapshot(self) -> ShardState:
        """A copy of the recoverable state."""
        return self.state.copy()

    # --- dead letters ----------------------------------------------------------

    def _hold(self, out: list[Outbound], tick_in: Any, at: datetime, origins: Sequence[Any], i: int) -> None:
        """Hold a tick beyond the skew; replay the held ones once others confirm the jump."""
        origin = tuple(origins[i]) if i < len(origins) else (MARKET_TICKS, None, b"", None, None)
        state = self.state
        state.held.append(HeldTick(tick_in, at, origin))
        if len(state.held) == 1:
            state.since_held = 0
        instruments = {h.tick.data.instrument_token for h in state.held}
        if len(state.held) >= CONFIRM_AFTER or len(instruments) >= 2:
            held, state.held = state.held, []
            state.newest = held[0].at  # a real gap in the market: time moves on
            out.extend(self.on_batch([h.tick for h in held], [h.at for h in held], [h.origin for h in held]))

    def _refute(self, out: list[Outbound], newest: datetime | None) -> None:
        """Dead-letter the held ticks: the market went on without them."""
        held, self.state.held = self.state.held, []
        if self._emit_dead and newest is not None:
            out.extend(self._too_far_ahead(h, newest) for h in held)

    def _too_far_ahead(self, held: HeldTick, newest: datetime) -> Outbound:
        return too_far_ahead(held, newest, self.config, self._clock)
