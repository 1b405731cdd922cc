"""Paper fills: exact Decimal maths, deterministic per-order randomness."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from operators.costs import Costs
from operators.errors import ConfigError
from operators.fills import FillConfig, FillSimulator
from schemas.events import TradingSignal, ValidatedSignal

T0 = datetime(2024, 1, 2, 9, 15, tzinfo=UTC)


def validated(side: str = "BUY", quantity: int = 100, price: float = 101.5) -> ValidatedSignal:
    original = TradingSignal(
        strategy_id="mom1",
        instrument_token=256265,
        signal_type=side,  # type: ignore[arg-type]
        quantity=quantity,
        price=price,
        timestamp=T0,
        confidence=0.075,
    )
    return ValidatedSignal(
        original_signal=original,
        validated_quantity=quantity,
        validated_price=price,
        risk_checks={"max_position_size": True},
        timestamp=T0,
    )


def test_design_example_buy() -> None:
    fill = FillSimulator(FillConfig()).fill("o-1", validated(), broker="paper", execution_mode="paper")
    assert fill.fill_price == 101.55075
    assert fill.fees == 10.155075
    assert fill.order_id == "o-1"
    assert fill.strategy_id == "mom1"
    assert fill.instrument_token == 256265
    assert fill.side == "BUY"
    assert fill.quantity == 100
    assert fill.timestamp == T0
    assert fill.broker == "paper"
    assert fill.execution_mode == "paper"


def test_sell_slips_down() -> None:
    fill = FillSimulator(FillConfig()).fill(
        "o-2", validated("SELL", 100, 103.0), broker="paper", execution_mode="paper"
    )
    price = Decimal("103") * Decimal("0.9995")
    assert fill.fill_price == float(price) == 102.9485
    assert fill.fees == float(price * 100 * Decimal("0.001"))


def test_float_inputs_convert_through_repr() -> None:
    # Decimal(0.1) would carry the binary expansion into the fees.
    config = FillConfig(costs=Costs(slippage_bps=Decimal(0), commission_bps=Decimal(10)))
    fill = FillSimulator(config).fill(
        "o", validated(quantity=3, price=0.1), broker="paper", execution_mode="paper"
    )
    assert fill.fill_price == 0.1
    assert fill.fees == float(Decimal("0.0003"))


def test_latency_shifts_the_fill_time() -> None:
    sim = FillSimulator(FillConfig(latency=timedelta(milliseconds=250)))
    fill = sim.fill("o", validated(), broker="paper", execution_mode="paper")
    assert fill.timestamp == T0 + timedelta(milliseconds=250)


def test_submitted_carries_the_validated_price_and_status() -> None:
    sub = FillSimulator(FillConfig()).submitted(
        "o-9", validated(), broker="zerodha", execution_mode="dry_run", status="DRY_RUN"
    )
    assert sub.price == 101.5
    assert sub.status == "DRY_RUN"
    assert sub.execution_mode == "dry_run"
    assert sub.broker == "zerodha"
    assert sub.quantity == 100
    assert sub.side == "BUY"
    assert sub.timestamp == T0


def test_rng_for_is_deterministic_per_order_and_seed() -> None:
    a = FillSimulator(FillConfig(seed=7))
    b = FillSimulator(FillConfig(seed=7))
    draws = [a.rng_for("o-1").random() for _ in range(3)]
    assert draws[0] == draws[1] == draws[2]
    assert a.rng_for("o-1").random() == b.rng_for("o-1").random()
    assert a.rng_for("o-1").random() != a.rng_for("o-2").random()
    assert a.rng_for("o-1").random() != FillSimulator(FillConfig(seed=8)).rng_for("o-1").random()


def test_from_parameters() -> None:
    config = FillConfig.from_parameters({"latency": 0.5, "commission_bps": 3, "seed": 42})
    assert config.latency == timedelta(milliseconds=500)
    assert config.costs == Costs(slippage_bps=Decimal(5), commission_bps=Decimal(3))
    assert config.seed == 42
    with pytest.raises(ConfigError, match="slippage_bps.*-1"):
        FillConfig.from_parameters({"slippage_bps": -1})
    with pytest.raises(ConfigError, match="latency"):
        FillConfig.from_parameters({"latency": -1})
