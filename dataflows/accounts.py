"""The per-stage account flows: risk and portfolio, each one account's state per key.

In: ``(account_id, item)`` pairs keyed as :func:`dataflows.account_steps.account_id`
builds them; each stage drives the engine-free steps of
:mod:`dataflows.account_steps` for its account, in arrival order, with Kafka
between the stages. (The all-in-one flow keeps its accounts in
:mod:`operators.account_shard` instead.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Stream
from bytewax.operators import StatefulLogic

from dataflows.account_steps import BooksState, Mark, PortfolioStep, RiskStep
from dataflows.clock import Clock
from dataflows.execution_routes import Executor
from dataflows.metrics import snapshot_timer
from dataflows.tick_time import carrying, stamp_output
from operators.portfolio import Portfolio
from operators.risk import RiskFilter, RiskState
from schemas.envelope import AnyEnvelope, FailedEnvelope, PnlEnvelope


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
