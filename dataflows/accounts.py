"""Account-keyed stages: risk filter, execution, portfolio accounting.

An *account* is one strategy at one broker; its key inside a flow is
``"<broker>:<strategy_id>"`` so brokers never share state. On Kafka the
message key stays ``<strategy_id>`` on each broker's own topics.

The all-in-one flow runs risk -> execution -> portfolio inside one account
step, so an account's marks, signals and fills are applied in exactly the
order its ticks arrived, whatever the worker count. The per-stage flows use
the same step objects one at a time, with Kafka in between.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import bytewax.operators as op
from bytewax.dataflow import Stream
from bytewax.operators import StatefulLogic

from dataflows.clock import Clock
from dataflows.metrics import DLQ_MESSAGES, RETRIES, snapshot_timer
from dataflows.tick_time import Stamped, carrying, stamp_output
from operators.execution import SimulatedExecution, order_id_of
from operators.failures import Failure, RetryConfig, RetryExhaustedError, RetryLogic, Rules, retry_call
from operators.fills import FillSimulator
from operators.portfolio import Portfolio, PortfolioState
from operators.risk import RiskFilter, RiskState, halted_rejection
from schemas.codec import REPLAYABLE, dead_letter, encode
from schemas.envelope import (
    AnyEnvelope,
    DlqEnvelope,
    FailedEnvelope,
    FilledEnvelope,
    Outbound,
    PnlEnvelope,
    RejectedEnvelope,
    SignalEnvelope,
    SubmittedEnvelope,
    ValidatedEnvelope,
    envelop,
    event_id,
)
from schemas.events import ExecutionMode, OrderFailed, ValidatedSignal
from schemas.headers import tick_created_headers
from schemas.topics import (
    ORDERS_FAILED,
    ORDERS_FILLED,
    ORDERS_SUBMITTED,
    PNL_SNAPSHOTS,
    SIGNALS_RAW,
    SIGNALS_REJECTED,
    SIGNALS_VALIDATED,
    account_key,
    broker_topic,
    dlq_topic,
)


class Mark(NamedTuple):
    """The latest price of an instrument for one account, at event time."""

    account: str
    instrument_token: int
    price: float
    timestamp: datetime
    tick_id: str
    correlation_id: str


def account_id(broker: str, strategy_id: str) -> str:
    """Return the in-flow key of one strategy's account at one broker."""
    return f"{broker}:{strategy_id}"


def account_of(item: Any) -> str:
    """Return the account an item (mark, signal, decision or order) belongs to."""
    if isinstance(item, Mark):
        return item.account
    data = item.data
    strategy_id = data.strategy_id if hasattr(data, "strategy_id") else data.original_signal.strategy_id
    return account_id(item.broker, strategy_id)


STAGE_OF: dict[type, str] = {
    SignalEnvelope: SIGNALS_RAW,
    ValidatedEnvelope: SIGNALS_VALIDATED,
    RejectedEnvelope: SIGNALS_REJECTED,
    SubmittedEnvelope: ORDERS_SUBMITTED,
    FilledEnvelope: ORDERS_FILLED,
    FailedEnvelope: ORDERS_FAILED,
    PnlEnvelope: PNL_SNAPSHOTS,
}


def to_outbound(envelope: AnyEnvelope | Stamped) -> Outbound:
    """Address a broker event to its broker-namespaced topic, keyed per DESIGN.md.

    Every broker event is partitioned by its strategy, so each account's
    events keep their order across the per-stage flows. A :class:`Stamped`
    event gets its tick's create time in the ``ap-tick-created-ms`` header
    (dead letters never: ``dlq replay`` republishes only their payload).
    """
    if type(envelope) is Stamped:
        out = to_outbound(envelope.item)
        if isinstance(out.envelope, DlqEnvelope):
            return out
        return out._replace(headers=tick_created_headers(envelope.tick_created_ms))
    if isinstance(envelope, DlqEnvelope):
        topic = dlq_topic(envelope.data.dlq_metadata.original_topic)
    else:
        topic = broker_topic(envelope.broker, STAGE_OF[type(envelope)])
    return Outbound(topic, envelope.key, envelope, envelope.key.split(":", 1)[0])


# --- the steps, engine-free ---------------------------------------------------


class RiskStep:
    """One account's risk filter: marks update prices, signals get a decision."""

    def __init__(
        self,
        risk: RiskFilter,
        clock: Clock,
        service: str,
        state: RiskState | None = None,
        *,
        dedupe: bool = True,
        halts: Callable[[str, str], str | None] | None = None,
    ) -> None:
        self._risk = risk
        self._halts = halts
        self._clock = clock
        self._source = f"{service}.risk"
        # Only a flow reading signals from Kafka can see one twice; in-process
        # signals come from a snapshot-consistent upstream, so remembering ids
        # there would only cost memory.
        self._dedupe = dedupe
        self.state = state if state is not None else risk.new_state()

    def on_mark(self, mark: Mark) -> None:
        """Remember the latest price of the mark's instrument."""
        self._risk.on_mark(self.state, mark.instrument_token, mark.price, mark.timestamp)

    def on_signal(self, signal: SignalEnvelope) -> ValidatedEnvelope | RejectedEnvelope | None:
        """Return the validated or rejected envelope of ``signal``; None if already decided.

        A redelivered signal (same id, e.g. after its producer restarted) is
        ignored: its decision was published the first time.
        """
        if self._dedupe and not self.state.seen_signals.add(signal.id):
            return None
        data = signal.data
        halted = self._halts(signal.broker, data.strategy_id) if self._halts is not None else None
        decision = halted_rejection(data, halted) if halted else self._risk.on_signal(self.state, data)
        decided = envelop(
            decision,
            id=event_id("risk_decision", signal.id),
            ts=self._clock(signal.data.timestamp),
            broker=signal.broker,
            cause=signal,
            source=self._source,
            key=account_key(signal.data.strategy_id),
        )
        if isinstance(decided, ValidatedEnvelope):
            self._risk.book(self.state, order_id_of(decided), decided.data)
        return decided  # type: ignore[return-value]

    def on_failed(self, failed: FailedEnvelope) -> None:
        """Release what a failed order booked, for its failed quantity (once: not again on a redelivery)."""
        self._risk.release_order(self.state, failed.data.order_id, failed.data.quantity)


LiveOrderPlacer = Callable[[str, ValidatedSignal], str]
"""Places a live order (order_id, signal) and returns the broker's status."""


@dataclass(frozen=True)
class ExecutionRoute:
    """How one broker's orders execute."""

    mode: ExecutionMode
    live_placer: LiveOrderPlacer | None = None
    retry: RetryLogic | None = None
    """Retries of the placer's failures (``None``: one try); see :mod:`operators.failures`."""
    rules: Rules = ()
    """How the broker client's exceptions classify."""
    sleep: Callable[[float], None] = time.sleep


@dataclass(frozen=True)
class Executor:
    """Turns validated signals into order events (stateless)."""

    simulator: FillSimulator
    routes: dict[str, ExecutionRoute]
    clock: Clock
    service: str

    _simulated: SimulatedExecution = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        """Build the paper and dry-run execution once."""
        object.__setattr__(self, "_simulated", SimulatedExecution(self.simulator, self.clock, self.service))

    def execute(self, validated: ValidatedEnvelope) -> list[AnyEnvelope]:
        """Return the order events of one validated signal.

        The order id derives from the validated signal's id, so a redelivered
        signal produces the same order, which ledger and portfolio ignore.
        paper: submitted (``FILLED``) + filled at the simulated price;
        dry_run: submitted (``DRY_RUN``) + a simulated fill marked ``dry_run``;
        live: submitted with the broker's status, or failed with its error.
        """
        route = self.routes[validated.broker]
        if route.mode != "live":
            return self._simulated.execute(validated, route.mode)  # type: ignore[return-value]
        order_id = order_id_of(validated)
        common: dict[str, Any] = {
            "ts": self.clock(validated.data.timestamp),
            "broker": validated.broker,
            "cause": validated,
            "source": f"{self.service}.execution",
            "key": validated.key,
        }
        return [self._place_live(order_id, validated.data, route, common)]

    def _place_live(
        self, order_id: str, data: ValidatedSignal, route: ExecutionRoute, common: dict[str, Any]
    ) -> AnyEnvelope:
        error = "live trading is enabled but no broker client is configured"
        status = None
        if route.live_placer is not None:
            try:
                status = self._call_placer(route, order_id, data)
            except RetryExhaustedError as err:
                failure = err.failure
                if failure.error_class in REPLAYABLE or failure.error_class == "authentication":
                    return self._dead_letter(common["cause"], failure)
                error = f"{failure.error_name}: {failure.error}"
        if status is not None:
            submitted = self.simulator.submitted(
                order_id, data, broker=common["broker"], execution_mode="live", status=status
            )
            return envelop(submitted, id=event_id("order_submitted", order_id), **common)
        signal = data.original_signal
        failed = OrderFailed(
            order_id=order_id,
            strategy_id=signal.strategy_id,
            instrument_token=signal.instrument_token,
            side=signal.signal_type,
            quantity=data.validated_quantity,
            timestamp=data.timestamp,
            broker=common["broker"],
            execution_mode="live",
            error_message=error,
        )
        return envelop(failed, id=event_id("order_failed", order_id), **common)

    def _call_placer(self, route: ExecutionRoute, order_id: str, data: ValidatedSignal) -> str:
        """The placer's status, retried per ``route.retry``; any failure ends as a typed error."""
        placer = route.live_placer
        assert placer is not None  # noqa: S101 - checked by the caller
        logic = route.retry or RetryLogic(RetryConfig(), random.Random(0))  # noqa: S311 - no retries
        return retry_call(
            "live_order",
            lambda: placer(order_id, data),
            logic,
            rules=route.rules,
            sleep=route.sleep,
            on_retry=lambda failure, _delay: RETRIES.labels(failure.error_class).inc(),
        )

    def _dead_letter(self, validated: ValidatedEnvelope, failure: Failure) -> DlqEnvelope:
        """Park a validated signal whose order could not be placed on ``<broker>.signals.validated.dlq``.

        Replaying it into the trading engine places the same order id again.
        """
        topic = broker_topic(validated.broker, SIGNALS_VALIDATED)
        letter = dead_letter(
            topic=topic,
            key=validated.key,
            value=encode(validated),
            error_type=failure.error_class,
            error_class=failure.error_name,
            error_message=f"live_order: {failure.error}",
            service_name=f"{self.service}.execution",
            dlq_timestamp=datetime.now(UTC),
            retry_count=failure.retry_count,
            broker=validated.broker,
        )
        DLQ_MESSAGES.labels(topic, validated.broker, failure.error_class).inc()
        return letter


@dataclass
class BooksState:
    """Recoverable state of one account's books: the portfolio and its last snapshot."""

    portfolio: PortfolioState
    last_snapshot_at: datetime | None = None
    pending: Mark | None = None

    def copy(self) -> BooksState:
        """Deep copy (marks are immutable)."""
        return BooksState(self.portfolio.copy(), self.last_snapshot_at, self.pending)


class PortfolioStep:
    """One account's books: fills move cash and positions, marks move P&L.

    Every newly applied fill yields a snapshot. Marks of held instruments
    yield at most one snapshot per ``snapshot_interval`` of event time; a
    mark inside the interval is kept pending and :meth:`flush` emits it (at
    end of input, or after a quiet spell in live flows), so the last
    snapshot always shows the latest marks.
    """

    def __init__(
        self,
        portfolio: Portfolio,
        clock: Clock,
        service: str,
        state: BooksState | None = None,
        snapshot_interval: timedelta = timedelta(seconds=1),
    ) -> None:
        self._portfolio = portfolio
        self._clock = clock
        self._source = f"{service}.portfolio"
        self._interval = snapshot_interval
        self.state = state if state is not None else BooksState(portfolio.new_state())

    def _snapshot(self, account: str, when: datetime, cause_id: str, correlation: str) -> PnlEnvelope:
        broker, strategy_id = account.split(":", 1)
        self.state.last_snapshot_at = when
        self.state.pending = None
        data = self._portfolio.snapshot(
            self.state.portfolio, strategy_id=strategy_id, broker=broker, timestamp=when
        )
        return PnlEnvelope(
            id=event_id("pnl_snapshot", account, cause_id),
            ts=self._clock(when),
            broker=broker,  # type: ignore[arg-type]
            correlation_id=correlation,
            causation_id=cause_id,
            source=self._source,
            version=1,
            key=account_key(strategy_id),
            data=data,
        )

    def on_mark(self, mark: Mark) -> PnlEnvelope | None:
        """Re-mark the instrument; a snapshot if held and the interval has passed."""
        if not self._portfolio.on_mark(self.state.portfolio, mark.instrument_token, mark.price):
            return None
        last = self.state.last_snapshot_at
        if last is None or mark.timestamp - last >= self._interval:
            return self._snapshot(mark.account, mark.timestamp, mark.tick_id, mark.correlation_id)
        self.state.pending = mark
        return None

    def on_fill(self, fill: FilledEnvelope) -> PnlEnvelope | None:
        """Apply a fill once; a snapshot unless its order was applied before."""
        if self._portfolio.on_fill(self.state.portfolio, fill.data):
            return self._snapshot(account_of(fill), fill.data.timestamp, fill.id, fill.correlation_id)
        return None

    @property
    def has_pending(self) -> bool:
        """Whether marks arrived since the last snapshot."""
        return self.state.pending is not None

    def flush(self) -> PnlEnvelope | None:
        """The snapshot held back by the interval, if any."""
        mark = self.state.pending
        if mark is None:
            return None
        return self._snapshot(mark.account, mark.timestamp, mark.tick_id, mark.correlation_id)


# --- Bytewax glue -------------------------------------------------------------


@dataclass(frozen=True)
class AccountSteps:
    """Builds the steps of one account; shared by every account of a flow."""

    risk: RiskFilter
    executor: Executor
    portfolio: Portfolio
    clock: Clock
    service: str
    snapshot_interval: timedelta = timedelta(seconds=1)
    idle_flush_after: timedelta | None = None
    """Live flows: emit a held-back snapshot after this much quiet (wall clock)."""
    halts: Callable[[str, str], str | None] | None = None
    """The kill switch: ``(broker, strategy_id)`` -> the ``halted`` reason, or None."""

    def books(self, state: BooksState | None) -> PortfolioStep:
        """A :class:`PortfolioStep` over ``state`` (fresh when None)."""
        return PortfolioStep(self.portfolio, self.clock, self.service, state, self.snapshot_interval)


class _FlushesBooks:
    """Emits the books' held-back snapshot at end of input or after a quiet spell."""

    _books: PortfolioStep
    _idle_after: timedelta | None
    _flush_at: datetime | None = None

    def _after_item(self) -> None:
        if self._idle_after is not None and self._books.has_pending and self._flush_at is None:
            self._flush_at = datetime.now(UTC) + self._idle_after

    def _flush(self) -> tuple[Iterable[PnlEnvelope], bool]:
        self._flush_at = None
        snapshot = self._books.flush()
        return ((snapshot,) if snapshot else ()), StatefulLogic.RETAIN

    def on_eof(self) -> tuple[Iterable[PnlEnvelope], bool]:
        return self._flush()

    def notify_at(self) -> datetime | None:
        self._after_item()  # also re-arms the timer for a pending snapshot restored on resume
        return self._flush_at

    def on_notify(self) -> tuple[Iterable[PnlEnvelope], bool]:
        return self._flush()


@dataclass
class AccountState:
    """Recoverable state of one account: its risk view and its books."""

    risk: RiskState
    books: BooksState


class _AccountLogic(_FlushesBooks, StatefulLogic[Any, AnyEnvelope, AccountState]):
    """Risk -> execution -> portfolio for one account, in arrival order."""

    def __init__(self, steps: AccountSteps, resume: AccountState | None) -> None:
        self._risk = RiskStep(
            steps.risk,
            steps.clock,
            steps.service,
            resume.risk if resume else None,
            dedupe=False,
            halts=steps.halts,
        )
        self._books = steps.books(resume.books if resume else None)
        self._executor = steps.executor
        self._idle_after = steps.idle_flush_after

    def on_item(self, value: Any) -> tuple[Iterable[AnyEnvelope], bool]:
        if isinstance(value, Mark):
            self._risk.on_mark(value)
            snapshot = self._books.on_mark(value)
            self._after_item()
            return ((snapshot,) if snapshot else ()), StatefulLogic.RETAIN
        decision = self._risk.on_signal(value)
        if decision is None:
            return (), StatefulLogic.RETAIN
        if not isinstance(decision, ValidatedEnvelope):
            return (decision,), StatefulLogic.RETAIN
        out: list[AnyEnvelope] = [decision]
        for order in self._executor.execute(decision):
            out.append(order)
            if isinstance(order, FilledEnvelope) and (snapshot := self._books.on_fill(order)):
                out.append(snapshot)
        return out, StatefulLogic.RETAIN

    def snapshot(self) -> AccountState:
        with snapshot_timer("accounts").time():
            return AccountState(self._risk.state.copy(), self._books.state.copy())


def account_stage(step_id: str, items: Stream[tuple[str, Any]], steps: AccountSteps) -> Stream[AnyEnvelope]:
    """All-in-one account stage. In: ``(account_id, Mark | SignalEnvelope)``.

    Out: decisions, orders and P&L snapshots of every account.
    """
    out = op.stateful(f"{step_id}_accounts", items, lambda resume: _AccountLogic(steps, resume))
    return op.key_rm(f"{step_id}_unkey", out)


class _RiskLogic(StatefulLogic[Any, AnyEnvelope, RiskState]):
    def __init__(self, steps: AccountSteps, resume: RiskState | None) -> None:
        self._risk = RiskStep(steps.risk, steps.clock, steps.service, resume, halts=steps.halts)

    def on_item(self, value: Any) -> tuple[Iterable[AnyEnvelope], bool]:
        if isinstance(value, Mark):
            self._risk.on_mark(value)
            return (), StatefulLogic.RETAIN
        if isinstance(value, FailedEnvelope):
            self._risk.on_failed(value)
            return (), StatefulLogic.RETAIN
        decision = self._risk.on_signal(value)
        return ((decision,) if decision else ()), StatefulLogic.RETAIN

    def snapshot(self) -> RiskState:
        with snapshot_timer("risk").time():
            return self._risk.state.copy()


def risk_stage(step_id: str, items: Stream[tuple[str, Any]], steps: AccountSteps) -> Stream[AnyEnvelope]:
    """Per-stage risk. In: ``(account_id, Mark | SignalEnvelope | FailedEnvelope)``; out: decisions.

    A failed order releases the position, cash and daily trade it booked. A
    :class:`Stamped` signal's decision comes out stamped with its tick time.
    """
    out = op.stateful(
        f"{step_id}_risk", items, lambda resume: carrying(_RiskLogic(steps, resume), stamp_output)
    )
    return op.key_rm(f"{step_id}_unkey", out)


class _PortfolioLogic(_FlushesBooks, StatefulLogic[Any, PnlEnvelope, BooksState]):
    def __init__(self, steps: AccountSteps, resume: BooksState | None) -> None:
        self._books = steps.books(resume)
        self._idle_after = steps.idle_flush_after

    def on_item(self, value: Any) -> tuple[Iterable[PnlEnvelope], bool]:
        snapshot = self._books.on_mark(value) if isinstance(value, Mark) else self._books.on_fill(value)
        self._after_item()
        return ((snapshot,) if snapshot else ()), StatefulLogic.RETAIN

    def snapshot(self) -> BooksState:
        with snapshot_timer("portfolio").time():
            return self._books.state.copy()


def portfolio_stage(step_id: str, items: Stream[tuple[str, Any]], steps: AccountSteps) -> Stream[PnlEnvelope]:
    """Per-stage portfolio. In: ``(account_id, Mark | FilledEnvelope)``; out: snapshots.

    A :class:`Stamped` fill's snapshot comes out stamped with its tick time.
    """
    out = op.stateful(
        f"{step_id}_books", items, lambda resume: carrying(_PortfolioLogic(steps, resume), stamp_output)
    )
    return op.key_rm(f"{step_id}_unkey", out)
