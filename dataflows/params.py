"""What the trading stages are configured with: :class:`PipelineParams` (DESIGN.md defaults).

Shared by the replay, the all-in-one live flow and the per-stage flows, so
none of them imports another to get it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, timedelta
from decimal import Decimal
from typing import Any

from dataflows.accounts import AccountSteps
from dataflows.clock import Clock
from dataflows.execution_routes import ExecutionRoute, Executor
from operators.account_books import Execute
from operators.costs import Costs
from operators.fills import FillConfig, FillSimulator
from operators.portfolio import Portfolio, PortfolioConfig
from operators.risk import RiskConfig, RiskFilter
from operators.shard import ShardConfig
from schemas.codec import NaiveZone
from schemas.events import ExecutionMode


@dataclass(frozen=True)
class PipelineParams:
    """Everything the trading stages are configured with (DESIGN.md defaults)."""

    brokers: tuple[str, ...] = ("paper", "zerodha")
    risk: RiskConfig = RiskConfig()
    fills: FillConfig = FillConfig()
    portfolio: PortfolioConfig = PortfolioConfig()
    mark_interval: timedelta = timedelta(seconds=1)
    snapshot_interval: timedelta = timedelta(seconds=10)
    max_tick_skew: timedelta = timedelta(days=1)
    naive_tz: NaiveZone = UTC
    zerodha_mode: ExecutionMode = "dry_run"
    service: str = "alpha-panda"
    shards: int = 1
    """Strategy shards (one group) or account shards (several groups): strategies by ``shard_of``."""
    groups: int = 1
    """Instrument groups: above 1, one strategy's instruments spread over workers
    (:mod:`dataflows.instrument_groups`); 1 runs each shard's strategies in one step."""
    idle_mark_after: timedelta | None = None
    zerodha_route: ExecutionRoute | None = None
    """Live Zerodha orders (:func:`dataflows.zerodha.zerodha_route`); None: ``zerodha_mode`` simulated."""
    halts: Callable[[str, str], str | None] | None = None
    """The kill switch: ``(broker, strategy_id)`` -> the ``halted`` reason, or None to trade."""
    accounts_apart: bool = False
    """The trading shard's accounts (risk, execution, books) as a step of their own on worker 1 of
    two, the shard on worker 0 (``alpha-panda replay --processes 2``): the same messages, two cores."""
    recoverable: bool = True
    """False for flows that never resume (replays, sweeps, the bench): their stateful steps
    skip copying their state for the snapshot Bytewax asks at each epoch close
    (:mod:`dataflows.unrecovered`)."""

    @property
    def one_shard(self) -> bool:
        """One trading shard and one instrument group: the layout whose accounts can run apart."""
        return self.groups == 1 and self.shards <= 1

    @classmethod
    def from_settings(cls, settings: Any, *, live: bool = False) -> PipelineParams:
        """Build params from :class:`dataflows.settings.Settings`.

        ``live`` flows also publish held-back snapshots after a quiet spell
        of a mark interval of wall-clock time; replays only by event time
        and at end of input.
        """
        cash = Decimal(settings.starting_cash)
        costs = Costs(Decimal(settings.slippage_bps), Decimal(settings.commission_bps))
        return cls(
            brokers=tuple(settings.active_brokers),
            risk=RiskConfig(
                max_position_size=settings.max_position_size,
                max_daily_trades=settings.max_daily_trades,
                max_price_deviation=settings.max_price_deviation,
                starting_cash=cash,
                costs=costs,
            ),
            fills=FillConfig(
                costs=costs,
                latency=timedelta(milliseconds=settings.fill_latency_ms),
                seed=settings.fill_seed,
            ),
            portfolio=PortfolioConfig(starting_cash=cash),
            mark_interval=timedelta(seconds=settings.mark_interval_s),
            snapshot_interval=timedelta(seconds=settings.snapshot_interval_s),
            max_tick_skew=timedelta(seconds=settings.max_tick_skew_s),
            naive_tz=settings.naive_zone(),
            zerodha_mode="live" if settings.zerodha_live else "dry_run",
            service=settings.service_name,
            shards=settings.trading_shards,
            groups=settings.instrument_groups,
            idle_mark_after=timedelta(seconds=settings.mark_interval_s) if live else None,
        )

    def routes(self) -> dict[str, ExecutionRoute]:
        """How each broker's orders execute."""
        return {
            "paper": ExecutionRoute("paper"),
            "zerodha": self.zerodha_route or ExecutionRoute(self.zerodha_mode),
        }

    def account_steps(self, clock: Clock) -> AccountSteps:
        """The risk, execution and portfolio steps every account is built from (per-stage flows)."""
        executor = Executor(FillSimulator(self.fills), self.routes(), clock, self.service)
        return AccountSteps(
            RiskFilter(self.risk),
            executor,
            Portfolio(self.portfolio),
            clock,
            self.service,
            snapshot_interval=self.snapshot_interval,
            idle_flush_after=self.idle_mark_after,
            halts=self.halts,
        )

    def trading_collaborators(self, clock: Clock) -> tuple[RiskFilter, Portfolio, Execute]:
        """The risk filter, the books and the executor every trading shard is built with."""
        executor = Executor(FillSimulator(self.fills), self.routes(), clock, self.service)
        return RiskFilter(self.risk), Portfolio(self.portfolio), executor.execute

    def shard_config(self) -> ShardConfig:
        """What every trading shard of the all-in-one flow shares."""
        return ShardConfig(
            brokers=self.brokers,
            snapshot_interval=self.snapshot_interval,
            max_tick_skew=self.max_tick_skew,
            service=self.service,
        )
