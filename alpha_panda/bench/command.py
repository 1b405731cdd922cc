"""The ``alpha-panda bench`` command: options only; the bench itself loads when it runs.

The CLI imports this module at start-up, so it imports nothing but typer and
:mod:`alpha_panda.bench.config` (standard library): the engine, the pipeline
and the live connectors load inside :func:`bench_command`.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer

from alpha_panda.bench.config import QUICK, SCENARIO_NAMES, BenchConfig


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part.replace("_", "")) for part in text.split(",") if part.strip())
    except ValueError as err:
        msg = f"expected comma-separated integers, got {text!r}"
        raise typer.BadParameter(msg) from err
    if not values or min(values) < 1:
        msg = f"expected positive integers, got {text!r}"
        raise typer.BadParameter(msg)
    return values


def bench_command(
    scenarios: Annotated[
        str,
        typer.Option(help=f"Comma-separated, among {','.join(SCENARIO_NAMES)} (live starts local servers)."),
    ] = ",".join(SCENARIO_NAMES),
    instruments: Annotated[
        str | None, typer.Option(help="Instrument counts for replay and memory (default 10,100,1000,10000).")
    ] = None,
    ticks: Annotated[
        int | None, typer.Option(min=1, help="Ticks per replay, memory and scaling run (default 300000).")
    ] = None,
    repeat: Annotated[int, typer.Option(min=1, help="Runs per figure; the median is reported.")] = 1,
    scaling_instruments: Annotated[
        int | None, typer.Option(min=1, help="Instruments in the scaling runs (default 10000).")
    ] = None,
    processes: Annotated[
        bool,
        typer.Option(help="Include the two-process run in scaling, and the peers replayed on one process."),
    ] = True,
    peer_instruments: Annotated[
        str | None, typer.Option(help="Instrument counts of the peers' tape (default 100,10000).")
    ] = None,
    peer_ticks: Annotated[
        int | None, typer.Option(min=1, help="Ticks of each peers' tape (default 1000000).")
    ] = None,
    live_ticks: Annotated[
        int | None, typer.Option(min=100, help="Ticks of the live throughput runs (default 300000).")
    ] = None,
    live_rates: Annotated[
        str | None, typer.Option(help="Offered ticks/s of the live latency runs (default 1000,5000).")
    ] = None,
    live_seconds: Annotated[
        float | None, typer.Option(min=1, help="Seconds of each live latency run (default 20).")
    ] = None,
    live_floor_batches: Annotated[
        int | None,
        typer.Option(
            min=0, help="One-message record batches in the broker floor's aged partition (default 5000)."
        ),
    ] = None,
    quick: Annotated[bool, typer.Option(help="Small sizes, for a smoke test.")] = False,
    json_path: Annotated[Path, typer.Option("--json", help="Where to write the JSON report.")] = Path(
        "out/bench.json"
    ),
) -> None:
    """Measure replay throughput vs the bare engine, state size, scaling and the peers' workload."""
    base = QUICK if quick else BenchConfig()
    chosen = tuple(name.strip() for name in scenarios.split(",") if name.strip())
    overrides: dict[str, Any] = {"scenarios": chosen, "repeat": repeat, "processes": processes}
    if instruments is not None:
        overrides["instruments"] = _int_list(instruments)
    if ticks is not None:
        overrides["ticks"] = overrides["scaling_ticks"] = ticks
    if scaling_instruments is not None:
        overrides["scaling_instruments"] = scaling_instruments
    if peer_instruments is not None:
        overrides["peer_instruments"] = _int_list(peer_instruments)
    if peer_ticks is not None:
        overrides["peer_ticks"] = peer_ticks
    if live_ticks is not None:
        overrides["live_ticks"] = live_ticks
    if live_rates is not None:
        overrides["live_rates"] = tuple(float(rate) for rate in _int_list(live_rates))
    if live_seconds is not None:
        overrides["live_seconds"] = live_seconds
    if live_floor_batches is not None:
        overrides["live_floor_batches"] = live_floor_batches
    _run(replace(base, **overrides), json_path)


def _run(config: BenchConfig, json_path: Path) -> None:
    import json

    from rich.console import Console

    from alpha_panda.bench.report import print_report
    from alpha_panda.bench.run import run_bench

    console = Console(width=None if Console().is_terminal else 120)
    err_console = Console(stderr=True)
    try:
        report = run_bench(config, log=lambda line: err_console.print(f"[dim]{line}[/]"))
    except ValueError as err:
        err_console.print(f"[bold red]error:[/] {err}")
        raise typer.Exit(code=2) from err
    print_report(report, console)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    console.print(f"wrote {json_path}")
