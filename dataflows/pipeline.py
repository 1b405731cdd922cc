"""Every stage in one flow: ticks -> strategies -> risk -> execution -> portfolio.

``build_pipeline`` is the wiring shared by the replay flow and the live
all-in-one flow: raw tick messages in, one stream of
:class:`schemas.envelope.Outbound` out (every stage's events, both brokers,
dead letters included). Sinks are attached by the caller.

``python -m bytewax.run dataflows.pipeline`` runs the live flow (Kafka in,
Kafka/Redis/Postgres out); the module attribute ``flow`` is built on first
access so that importing this module reads no settings.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream

from connectors.files import JsonlTopicSink, ProgressCallback, TickFileSource
from dataflows.accounts import AccountSteps, ExecutionRoute, Executor, account_stage, to_outbound
from dataflows.clock import Clock, event_time_clock
from dataflows.ingest import decode_ticks
from dataflows.signals import context_for, strategy_stage
from operators.fills import FillConfig, FillSimulator
from operators.portfolio import Portfolio, PortfolioConfig
from operators.risk import RiskConfig, RiskFilter
from operators.strategy import StrategyConfig
from schemas.codec import RawMessage
from schemas.envelope import Outbound, SignalEnvelope
from schemas.events import ExecutionMode
from schemas.topics import MARKET_TICKS


@dataclass(frozen=True)
class PipelineParams:
    """Everything the trading stages are configured with (DESIGN.md defaults)."""

    brokers: tuple[str, ...] = ("paper", "zerodha")
    risk: RiskConfig = RiskConfig()
    fills: FillConfig = FillConfig()
    portfolio: PortfolioConfig = PortfolioConfig()
    mark_interval: timedelta = timedelta(seconds=1)
    zerodha_mode: ExecutionMode = "dry_run"
    service: str = "alpha-panda"
    shards: int = 1
    idle_mark_after: timedelta | None = None

    @classmethod
    def from_settings(cls, settings: Any, *, live: bool = False) -> PipelineParams:
        """Build params from :class:`alpha_panda.settings.Settings`.

        ``live`` flows also mark ticks left unmarked for a mark interval of
        wall-clock time; replays mark only by event time and at end of input.
        """
        cash = Decimal(settings.starting_cash)
        return cls(
            brokers=tuple(settings.active_brokers),
            risk=RiskConfig(
                max_position_size=settings.max_position_size,
                max_daily_trades=settings.max_daily_trades,
                max_price_deviation=settings.max_price_deviation,
                starting_cash=cash,
                slippage_bps=Decimal(settings.slippage_bps),
                commission_bps=Decimal(settings.commission_bps),
            ),
            fills=FillConfig(
                slippage_bps=Decimal(settings.slippage_bps),
                commission_bps=Decimal(settings.commission_bps),
                latency=timedelta(milliseconds=settings.fill_latency_ms),
                seed=settings.fill_seed,
            ),
            portfolio=PortfolioConfig(starting_cash=cash),
            mark_interval=timedelta(seconds=settings.mark_interval_s),
            zerodha_mode="live" if settings.zerodha_live else "dry_run",
            service=settings.service_name,
            idle_mark_after=timedelta(seconds=settings.mark_interval_s) if live else None,
        )

    def routes(self) -> dict[str, ExecutionRoute]:
        """How each broker's orders execute."""
        return {"paper": ExecutionRoute("paper"), "zerodha": ExecutionRoute(self.zerodha_mode)}

    def account_steps(self, clock: Clock) -> AccountSteps:
        """The risk, execution and portfolio steps every account is built from."""
        executor = Executor(FillSimulator(self.fills), self.routes(), clock, self.service)
        return AccountSteps(
            RiskFilter(self.risk),
            executor,
            Portfolio(self.portfolio),
            clock,
            self.service,
            snapshot_interval=self.mark_interval,
            idle_flush_after=self.idle_mark_after,
        )


def build_pipeline(
    raw_ticks: Stream[RawMessage],
    configs: Sequence[StrategyConfig],
    params: PipelineParams,
    *,
    clock: Clock,
    dlq_clock: Callable[[RawMessage], datetime],
    config_updates: Stream[Sequence[StrategyConfig]] | None = None,
) -> Stream[Outbound]:
    """Wire every stage; return every published message as one stream.

    In: raw ``market.ticks`` messages, and optionally new strategy sets (hot
    reload). Out: signals, validated and rejected signals,
    submitted/filled/failed orders and P&L snapshots on each broker's
    topics, and dead letters on ``market.ticks.dlq``.
    """
    ticks, dead_ticks = decode_ticks(
        "ingest", raw_ticks, service=params.service, dlq_clock=dlq_clock, derive_ids=False
    )
    context = context_for(
        configs,
        brokers=params.brokers,
        mark_interval=params.mark_interval,
        clock=clock,
        service=params.service,
        shards=params.shards,
        idle_mark_after=params.idle_mark_after,
    )
    updates = None
    if config_updates is not None:
        updates = op.map("strategy_contexts", config_updates, lambda configs: context.with_configs(configs))
    routed = strategy_stage("strategies", ticks, context, updates=updates)
    signals = op.filter_map(
        "signals", routed, lambda kv: kv[1] if isinstance(kv[1], SignalEnvelope) else None
    )
    decided = account_stage("accounts", routed, params.account_steps(clock))
    events = op.merge("broker_events", signals, decided)
    return op.merge("published", op.map("publish", events, to_outbound), dead_ticks)


def _replay_dlq_clock(msg: RawMessage) -> datetime:
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
    batch_size: int = 1024,
) -> Dataflow:
    """The no-server flow: a tick file in, ``out_dir/<topic>.jsonl`` out."""
    flow = Dataflow("alpha_panda_replay")
    raw = op.input("ticks", flow, TickFileSource(ticks_path, batch_size=batch_size, on_progress=on_progress))
    out = build_pipeline(
        raw, configs, params or PipelineParams(), clock=event_time_clock, dlq_clock=_replay_dlq_clock
    )
    op.output("topics", out, JsonlTopicSink(out_dir))
    return flow


def live_flow(settings: Any) -> Dataflow:
    """All stages in one flow: ``market.ticks`` in; every topic, Redis and the ledger out.

    Strategies load from Postgres and reload when ``strategy_configurations``
    changes. Envelopes are stamped with wall-clock creation time.
    """
    from dataflows import live  # noqa: PLC0415 - live imports settings-dependent connectors
    from dataflows.clock import wall_clock  # noqa: PLC0415

    servers, params, flow = live.begin(settings, "pipeline", redis=True)
    raw = live.kafka_input(flow, "market_ticks", servers, [MARKET_TICKS], tail=settings.kafka_tail)
    published = build_pipeline(
        raw,
        live.initial_configs(servers),
        params,
        clock=wall_clock,
        dlq_clock=live.live_dlq_clock,
        config_updates=live.config_updates(flow, servers, settings),
    )
    live.attach_sinks(published, servers, redis=True, ledger=True)
    return flow


def __getattr__(name: str) -> Any:
    # `python -m bytewax.run dataflows.pipeline` looks up `flow`; build it
    # only then, so the replay path never imports the live connectors.
    from dataflows.live import lazy_flow  # noqa: PLC0415

    return lazy_flow(__name__, live_flow)(name)
