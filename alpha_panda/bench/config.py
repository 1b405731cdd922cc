"""What ``alpha-panda bench`` runs: sizes, repeats and scenario names (standard library only)."""

from __future__ import annotations

from dataclasses import dataclass

SCENARIO_NAMES = ("replay", "memory", "scaling", "peers", "live")
"""Every scenario, in the order a full run takes them."""

OFFLINE_SCENARIOS = ("replay", "memory", "scaling", "peers")
"""The scenarios that need no servers (``live`` starts a local stack): a :class:`BenchConfig`'s default."""


@dataclass(frozen=True)
class BenchConfig:
    """What to run.

    ``instruments``: instrument counts of the replay and memory scenarios.
    ``ticks``: ticks per replay/memory run (split evenly over the instruments).
    ``repeat``: runs per timed figure (the median is reported).
    ``scaling_instruments`` / ``scaling_ticks``: size of the scaling runs.
    ``processes``: also run two processes in the scaling scenario, and
    compare a peers' replay on two processes with one on one.
    ``peer_instruments`` / ``peer_ticks``: sizes of the peers' tape (one
    tape per instrument count, ``peer_ticks`` ticks in total each).
    ``live_*``: the live scenario (ticks of the throughput runs, offered
    rates and seconds of the latency runs, modes; record batches the
    broker floor's aged partition holds).
    """

    scenarios: tuple[str, ...] = OFFLINE_SCENARIOS
    instruments: tuple[int, ...] = (10, 100, 1_000, 10_000)
    ticks: int = 300_000
    repeat: int = 1
    scaling_instruments: int = 10_000
    scaling_ticks: int = 300_000
    processes: bool = True
    peer_instruments: tuple[int, ...] = (100, 10_000)
    peer_ticks: int = 1_000_000
    peer_processes: int | None = None
    """The peers' replay's ``--processes`` (None: the replay's default, two for these tapes)."""
    live_ticks: int = 300_000
    """Ticks of the raw-broker and sustained runs: 60,000 (the default until 2026-12-04) made a
    sustained all-in-one run of 1.7 s, mostly its start (0.21x the raw consume rate, against 0.38x
    with 300,000, the same day)."""
    live_rates: tuple[float, ...] = (1_000.0, 5_000.0)
    live_seconds: float = 20.0
    live_modes: tuple[str, ...] = ("all-in-one", "per-stage")
    live_floor_batches: int = 5_000
    speed_additions: int = 10_000_000
    """The machine-speed loop's length (see :func:`alpha_panda.bench.machine.loop_seconds`)."""


QUICK = BenchConfig(
    instruments=(10, 100),
    ticks=5_000,
    repeat=1,
    scaling_instruments=10,
    scaling_ticks=5_000,
    peer_instruments=(10,),
    peer_ticks=5_000,
    live_ticks=2_000,
    live_rates=(500.0,),
    live_seconds=3.0,
    live_floor_batches=200,
    speed_additions=1_000_000,
)
"""Small sizes for a smoke run (seconds, not minutes)."""
