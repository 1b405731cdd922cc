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

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import bytewax.operators as op
from bytewax.dataflow import Stream
from bytewax.operators import StatefulLogic

from dataflows.clock import Clock
from operators.fills import FillSimulator
from operators.portfolio import Portfolio, PortfolioState
from operators.risk import RiskFilter, RiskState
from schemas.envelope import (
    AnyEnvelope,
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


def to_outbound(envelope: AnyEnvelope) -> Outbound:
    """Address a broker event to its broker-namespaced topic, keyed per DESIGN.md.

    Every broker event is partitioned by its strategy, so each account's
    events keep their order across the per-stage flows.
    """
    topic = broker_topic(envelope.broker, STAGE_OF[type(envelope)])
    return Outbound(topic, envelope.key, envelope, envelope.key.split(":", 1)[0])


# --- the steps, engine-free ---------------------------------------------------


class RiskStep:
    """One account's risk filter: marks update prices, signals get a decision."""

    def __init__(self, risk: RiskFilter, clock: Clock, service: str, state: RiskState | None = None) -> None:
        self._risk = risk
        self._clock = clock
        self._source = f"{service}.risk"
        self.state = state if state is not None else risk.new_state()

    def on_mark(self, mark: Mark) -> None:
        """Remember the latest price of the mark's instrument."""
        self._risk.on_mark(self.state, mark.instrument_token, mark.price, mark.timestamp)

    def on_signal(self, signal: SignalEnvelope) -> ValidatedEnvelope | RejectedEnvelope:
        """Return the validated or rejected envelope of ``signal``."""
        decision = self._risk.on_signal(self.state, signal.data)
        return envelop(  # type: ignore[return-value]
            decision,
            id=event_id("risk_decision", signal.id),
            ts=self._clock(signal.data.timestamp),
            broker=signal.broker,
            cause=signal,
            source=self._source,
            key=account_key(signal.data.strategy_id),
        )


LiveOrderPlacer = Callable[[str, ValidatedSignal], str]
"""Places a live order (order_id, signal) and returns the broker's status."""


@dataclass(frozen=True)
class ExecutionRoute:
    """How one broker's orders execute."""

    mode: ExecutionMode
    live_placer: LiveOrderPlacer | None = None


@dataclass(frozen=True)
class Executor:
    """Turns validated signals into order events (stateless)."""

    simulator: FillSimulator
    routes: dict[str, ExecutionRoute]
    clock: Clock
    service: str

    def execute(self, validated: ValidatedEnvelope) -> list[AnyEnvelope]:
        """Return the order events of one validated signal.

        The order id derives from the validated signal's id, so a redelivered
        signal produces the same order, which ledger and portfolio ignore.
        paper: submitted (``FILLED``) + filled at the simulated price;
        dry_run: submitted (``DRY_RUN``) + a simulated fill marked ``dry_run``;
        live: submitted with the broker's status, or failed with its error.
        """
        order_id = event_id("order", validated.broker, validated.id)
        route = self.routes[validated.broker]
        data = validated.data
        common: dict[str, Any] = {
            "ts": self.clock(data.timestamp),
            "broker": validated.broker,
            "cause": validated,
            "source": f"{self.service}.execution",
            "key": validated.key,
        }
        if route.mode == "live":
            return [self._place_live(order_id, data, route, common)]
        status = "DRY_RUN" if route.mode == "dry_run" else "FILLED"
        submitted = self.simulator.submitted(
            order_id, data, broker=validated.broker, execution_mode=route.mode, status=status
        )
        filled = self.simulator.fill(order_id, data, broker=validated.broker, execution_mode=route.mode)
        return [
            envelop(submitted, id=event_id("order_submitted", order_id), **common),
            envelop(filled, id=event_id("order_filled", order_id), **common),
        ]

    def _place_live(
        self, order_id: str, data: ValidatedSignal, route: ExecutionRoute, common: dict[str, Any]
    ) -> AnyEnvelope:
        error = "live trading is enabled but no broker client is configured"
        status = None
        if route.live_placer is not None:
            try:
                status = route.live_placer(order_id, data)
            except Exception as err:  # noqa: BLE001 - any broker refusal becomes an order_failed
                error = f"{type(err).__name__}: {err}"
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


class PortfolioStep:
    """One account's books: fills move cash and positions, marks move P&L.

    Returns a snapshot after every newly applied fill and every mark of a
    held instrument (marks are throttled upstream); ``None`` otherwise.
    """

    def __init__(
        self, portfolio: Portfolio, clock: Clock, service: str, state: PortfolioState | None = None
    ) -> None:
        self._portfolio = portfolio
        self._clock = clock
        self._source = f"{service}.portfolio"
        self.state = state if state is not None else portfolio.new_state()

    def _snapshot(self, account: str, when: datetime, cause_id: str, correlation: str) -> PnlEnvelope:
        broker, strategy_id = account.split(":", 1)
        data = self._portfolio.snapshot(self.state, strategy_id=strategy_id, broker=broker, timestamp=when)
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
        """Re-mark the instrument; a snapshot if the account holds it."""
        if self._portfolio.on_mark(self.state, mark.instrument_token, mark.price):
            return self._snapshot(mark.account, mark.timestamp, mark.tick_id, mark.correlation_id)
        return None

    def on_fill(self, fill: FilledEnvelope) -> PnlEnvelope | None:
        """Apply a fill once; a snapshot unless its order was applied before."""
        if self._portfolio.on_fill(self.state, fill.data):
            return self._snapshot(account_of(fill), fill.data.timestamp, fill.id, fill.correlation_id)
        return None


# --- Bytewax glue -------------------------------------------------------------


@dataclass(frozen=True)
class AccountSteps:
    """Builds the steps of one account; shared by every account of a flow."""

    risk: RiskFilter
    executor: Executor
    portfolio: Portfolio
    clock: Clock
    service: str


@dataclass
class AccountState:
    """Recoverable state of one account: its risk view and its books."""

    risk: RiskState
    portfolio: PortfolioState


class _AccountLogic(StatefulLogic[Any, AnyEnvelope, AccountState]):
    """Risk -> execution -> portfolio for one account, in arrival order."""

    def __init__(self, steps: AccountSteps, resume: AccountState | None) -> None:
        self._risk = RiskStep(steps.risk, steps.clock, steps.service, resume.risk if resume else None)
        self._books = PortfolioStep(
            steps.portfolio, steps.clock, steps.service, resume.portfolio if resume else None
        )
        self._executor = steps.executor

    def on_item(self, value: Any) -> tuple[Iterable[AnyEnvelope], bool]:
        if isinstance(value, Mark):
            self._risk.on_mark(value)
            snapshot = self._books.on_mark(value)
            return ((snapshot,) if snapshot else ()), StatefulLogic.RETAIN
        decision = self._risk.on_signal(value)
        if not isinstance(decision, ValidatedEnvelope):
            return (decision,), StatefulLogic.RETAIN
        out: list[AnyEnvelope] = [decision]
        for order in self._executor.execute(decision):
            out.append(order)
            if isinstance(order, FilledEnvelope) and (snapshot := self._books.on_fill(order)):
                out.append(snapshot)
        return out, StatefulLogic.RETAIN

    def snapshot(self) -> AccountState:
        return AccountState(self._risk.state.copy(), self._books.state.copy())


def account_stage(step_id: str, items: Stream[tuple[str, Any]], steps: AccountSteps) -> Stream[AnyEnvelope]:
    """All-in-one account stage. In: ``(account_id, Mark | SignalEnvelope)``.

    Out: decisions, orders and P&L snapshots of every account.
    """
    out = op.stateful(f"{step_id}_accounts", items, lambda resume: _AccountLogic(steps, resume))  # type: ignore[arg-type]
    return op.key_rm(f"{step_id}_unkey", out)  # type: ignore[return-value]


class _RiskLogic(StatefulLogic[Any, AnyEnvelope, RiskState]):
    def __init__(self, steps: AccountSteps, resume: RiskState | None) -> None:
        self._risk = RiskStep(steps.risk, steps.clock, steps.service, resume)

    def on_item(self, value: Any) -> tuple[Iterable[AnyEnvelope], bool]:
        if isinstance(value, Mark):
            self._risk.on_mark(value)
            return (), StatefulLogic.RETAIN
        return (self._risk.on_signal(value),), StatefulLogic.RETAIN

    def snapshot(self) -> RiskState:
        return self._risk.state.copy()


def risk_stage(step_id: str, items: Stream[tuple[str, Any]], steps: AccountSteps) -> Stream[AnyEnvelope]:
    """Per-stage risk. In: ``(account_id, Mark | SignalEnvelope)``; out: decisions."""
    out = op.stateful(f"{step_id}_risk", items, lambda resume: _RiskLogic(steps, resume))  # type: ignore[arg-type]
    return op.key_rm(f"{step_id}_unkey", out)  # type: ignore[return-value]


class _PortfolioLogic(StatefulLogic[Any, PnlEnvelope, PortfolioState]):
    def __init__(self, steps: AccountSteps, resume: PortfolioState | None) -> None:
        self._books = PortfolioStep(steps.portfolio, steps.clock, steps.service, resume)

    def on_item(self, value: Any) -> tuple[Iterable[PnlEnvelope], bool]:
        snapshot = self._books.on_mark(value) if isinstance(value, Mark) else self._books.on_fill(value)
        return ((snapshot,) if snapshot else ()), StatefulLogic.RETAIN

    def snapshot(self) -> PortfolioState:
        return self._books.state.copy()


def portfolio_stage(step_id: str, items: Stream[tuple[str, Any]], steps: AccountSteps) -> Stream[PnlEnvelope]:
    """Per-stage portfolio. In: ``(account_id, Mark | FilledEnvelope)``; out: snapshots."""
    out = op.stateful(f"{step_id}_books", items, lambda resume: _PortfolioLogic(steps, resume))  # type: ignore[arg-type]
    return op.key_rm(f"{step_id}_unkey", out)  # type: ignore[return-value]
