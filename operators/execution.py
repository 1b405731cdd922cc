"""Simulated execution: paper orders and Zerodha dry runs, engine-free.

A validated signal becomes an ``order_submitted`` (status ``FILLED`` on
paper, ``DRY_RUN`` for a Zerodha dry run) and an ``order_filled`` from the
:class:`operators.fills.FillSimulator`. The order id derives from the
validated signal's id, so a redelivered signal makes the same order, which
the ledger and the books ignore.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal, TypeVar

from operators.fills import FillSimulator
from schemas.envelope import SCHEMA_VERSION, FilledEnvelope, SubmittedEnvelope, ValidatedEnvelope, uuid5_of

Clock = Callable[[datetime], datetime]
EnvelopeT = TypeVar("EnvelopeT", SubmittedEnvelope, FilledEnvelope)


def order_id_of(validated: ValidatedEnvelope) -> str:
    """The order id of a validated signal: the same for every delivery of it."""
    return uuid5_of(f"order|{validated.broker}|{validated.id}")


class SimulatedExecution:
    """Paper fills and dry runs of validated signals (stateless)."""

    def __init__(self, simulator: FillSimulator, clock: Clock, service: str) -> None:
        self._simulator = simulator
        self._clock = clock
        self._source = f"{service}.execution"

    def execute(
        self, validated: ValidatedEnvelope, mode: Literal["paper", "dry_run"]
    ) -> list[SubmittedEnvelope | FilledEnvelope]:
        """Return the submitted and filled envelopes of ``validated``."""
        order_id = order_id_of(validated)
        data = validated.data
        broker = validated.broker
        status = "DRY_RUN" if mode == "dry_run" else "FILLED"
        submitted = self._simulator.submitted(
            order_id, data, broker=broker, execution_mode=mode, status=status
        )
        filled = self._simulator.fill(order_id, data, broker=broker, execution_mode=mode)
        ts = self._clock(data.timestamp)
        return [
            self._envelope(SubmittedEnvelope, f"order_submitted|{order_id}", submitted, validated, ts),
            self._envelope(FilledEnvelope, f"order_filled|{order_id}", filled, validated, ts),
        ]

    def _envelope(
        self, kind: type[EnvelopeT], name: str, data: Any, cause: ValidatedEnvelope, ts: datetime
    ) -> EnvelopeT:
        """An order event of ``cause``, its id the UUIDv5 of ``name``."""
        return kind(
            id=uuid5_of(name),
            ts=ts,
            broker=cause.broker,
            correlation_id=cause.correlation_id,
            causation_id=cause.id,
            source=self._source,
            version=SCHEMA_VERSION,
            key=cause.key,
            data=data,
        )
