"""How validated signals become orders: each broker's execution route and the executor.

paper and dry_run orders are simulated (:mod:`operators.execution`); live
orders go through the route's placer, retried per its policy, and end as a
submitted order, a failed order, or a dead letter to replay.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from dataflows.clock import Clock
from dataflows.metrics import DLQ_MESSAGES, RETRIES
from operators.execution import SimulatedExecution, order_id_of
from operators.failures import Failure, RetryConfig, RetryExhaustedError, RetryLogic, Rules, retry_call
from operators.fills import FillSimulator
from schemas.codec import REPLAYABLE, dead_letter, encode
from schemas.envelope import AnyEnvelope, DlqEnvelope, ValidatedEnvelope, envelop, event_id
from schemas.events import ExecutionMode, OrderFailed, ValidatedSignal
from schemas.topics import SIGNALS_VALIDATED, broker_topic

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
