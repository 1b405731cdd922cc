"""The bench report as rich tables: the machine, one table per scenario that ran, the targets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.table import Table


def _rate(value: float) -> str:
    return f"{value:,.0f}"


def _mb(value: float) -> str:
    return f"{value / 2**20:,.0f}"


def _table(title: str, columns: tuple[str, ...], left: tuple[str, ...] = ()) -> Table:
    table = Table(title=title)
    for name in columns:
        table.add_column(name, justify="left" if name in left else "right")
    return table


def replay_table(rows: list[dict[str, Any]]) -> Table:
    """Pipeline and bare per-item flow, per instrument count."""
    table = _table(
        "Replay throughput, 1 worker (ticks/s)",
        ("instruments", "ticks", "pipeline s", "pipeline ticks/s", "messages", "signals", "fills")
        + ("bare s", "bare ticks/s", "vs bare", "RSS MiB"),
    )
    for row in rows:
        pipeline = row["pipeline"]
        table.add_row(
            f"{row['instruments']:,}",
            f"{row['ticks']:,}",
            f"{pipeline['seconds']:.2f}",
            _rate(pipeline["ticks_per_s"]),
            f"{pipeline['outputs']:,}",
            f"{pipeline['signals']:,}" if "signals" in pipeline else "-",
            f"{pipeline['fills']:,}" if "fills" in pipeline else "-",
            f"{row['bare']['seconds']:.2f}",
            _rate(row["bare"]["ticks_per_s"]),
            f"{row['pipeline_over_bare']:.1%}",
            _mb(row["rss_bytes"]),
        )
    return table


def memory_table(rows: list[dict[str, Any]]) -> Table:
    """Pickled shard state per (strategy, instrument)."""
    table = _table(
        "Shard state per (strategy, instrument), pickled as stored by recovery (bytes)",
        ("instruments", "pairs", "stored", "instruments B/pair", "accounts B/pair", "total B/pair")
        + ("RSS MiB", "peak RSS MiB"),
    )
    for row in rows:
        table.add_row(
            f"{row['instruments']:,}",
            f"{row['strategy_instrument_pairs']:,}",
            f"{row['state_bytes']:,}",
            f"{row['instrument_bytes_per_pair']:,.0f}",
            f"{row['account_bytes_per_pair']:,.0f}",
            f"{row['bytes_per_pair']:,.0f}",
            _mb(row["rss_bytes"]),
            _mb(row["peak_rss_bytes"]),
        )
    return table


def scaling_table(rows: list[dict[str, Any]]) -> Table:
    """Worker layouts against one worker."""
    table = _table(
        f"Scaling, {rows[0]['instruments']:,} instruments, {rows[0]['ticks']:,} ticks",
        ("mode", "groups", "shards", "seconds", "ticks/s", "messages", "speedup"),
        left=("mode",),
    )
    for row in rows:
        table.add_row(
            row["mode"],
            str(row.get("groups", 1)),
            str(row["shards"]),
            f"{row['seconds']:.2f}",
            _rate(row["ticks_per_s"]),
            f"{row['outputs']:,}",
            f"{row['speedup']:.2f}x",
        )
    return table


def peers_table(rows: list[dict[str, Any]]) -> Table:
    """``alpha-panda replay`` on the peers' tape against the reference rule."""
    table = _table(
        "Peers' tape: alpha-panda replay (whole process, paper, one momentum strategy) vs the reference rule",
        ("instruments", "ticks", "replay s", "replay ticks/s", "1 process s", "2 vs 1", "peak RSS MiB")
        + ("BUY / SELL fills", "reference BUY / SELL", "equal", "reference ticks/s"),
    )
    for row in rows:
        replay, reference, one = row["replay"], row["reference"], row["one_process"]
        table.add_row(
            f"{row['instruments']:,}",
            f"{row['ticks']:,}",
            f"{replay['seconds']:.2f}",
            _rate(replay["ticks_per_s"]),
            f"{one['seconds']:.2f}" if one else "-",
            f"{one['two_process_speedup']:.2f}x" if one else "-",
            _mb(replay["peak_rss_bytes"]),
            f"{replay['buys']:,} / {replay['sells']:,}",
            f"{reference['buys']:,} / {reference['sells']:,}",
            "[green]yes[/]" if row["fills_match"] else "[red]no[/]",
            _rate(reference["ticks_per_s"]) if reference["ticks_per_s"] else "-",
        )
    return table


def _percentiles(stats: dict[str, Any]) -> str:
    if not stats.get("count"):
        return "-"
    return f"{stats['p50']:.1f} / {stats['p95']:.1f} / {stats['p99']:.1f}"


def live_table(rows: list[dict[str, Any]]) -> Table:
    """Raw broker, broker floor, sustained and latency rows of the live scenario."""
    table = _table(
        "Live, local stack (Tansu, Redis, PostgreSQL), 20 instruments",
        ("measurement", "mode", "offered", "ticks/s", "signal p50/p95/p99 ms", "fill p50/p95/p99 ms")
        + ("broker hop p50/p95/p99 ms", "broker CPU s/s", "RSS MiB (growth)"),
        left=("measurement", "mode"),
    )
    for row in rows:
        if row["kind"] == "raw_broker":
            rates = f"{_rate(row['produce_per_s'])} / {_rate(row['consume_per_s'])}"
            table.add_row("raw broker", "produce / consume", "-", rates, "-", "-", "-", "-", "-")
        elif row["kind"] == "broker_floor":
            for name, label in (
                ("fresh", "fresh partition"),
                ("aged", f"after {row['aged_batches']:,} batches"),
            ):
                part = row[name]
                table.add_row(
                    "broker floor",
                    label,
                    _rate(row["rate"]),
                    "-",
                    "-",
                    "-",
                    _percentiles(part["hop_ms"]),
                    f"{part['broker_cpu_per_s']:.2f}",
                    "-",
                )
        elif row["kind"] == "sustained":
            rss = sum(row["rss_kib"].values()) / 1024
            rate = _rate(row["ticks_per_s"])
            table.add_row("sustained", row["mode"], "max", rate, "-", "-", "-", "-", f"{rss:.0f}")
        else:
            rss = sum(row["rss_kib_end"].values()) / 1024
            growth = sum(row["rss_growth_kib"].values()) / 1024
            cpu = row.get("broker_cpu_per_s")  # absent from reports written before it was measured
            table.add_row(
                f"latency ({row['seconds']:.0f} s)",
                row["mode"],
                _rate(row["rate"]),
                "-",
                _percentiles(row["tick_to_signal_ms"]),
                _percentiles(row["tick_to_fill_ms"]),
                _percentiles(row["broker_hop_ms"]),
                "-" if cpu is None else f"{cpu:.2f}",
                f"{rss:.0f} ({growth:+.1f})",
            )
    return table


def targets_table(checks: list[dict[str, Any]]) -> Table:
    """Each target: measured, threshold, met."""
    table = _table(
        "Targets", ("target", "measured", "target value", "met", "set by"), left=("target", "set by")
    )
    for check in checks:
        fmt = "{:.2f}" if check["threshold"] < 10 else "{:,.0f}"
        table.add_row(
            check["target"],
            fmt.format(check["measured"]),
            f"{check['comparison']} {fmt.format(check['threshold'])}",
            "[green]yes[/]" if check["met"] else "[red]no[/]",
            check["source"],
        )
    return table


TABLES: dict[str, Callable[[list[dict[str, Any]]], Table]] = {
    "replay": replay_table,
    "memory": memory_table,
    "scaling": scaling_table,
    "peers": peers_table,
    "live": live_table,
}


def print_report(report: dict[str, Any], console: Console) -> None:
    """Print the machine, one rich table per scenario that ran, then the target checks and notes."""
    hw, sw = report["hardware"], report["software"]
    console.print(
        f"{hw['cpu_model']}, {hw['usable_cores']}/{hw['cores']} cores, "
        f"{(hw['memory_bytes'] or 0) / 2**30:.1f} GiB; Python {sw['python']}, "
        f"bytewax {sw['bytewax']}, msgspec {sw['msgspec']}; {report['method']['statistic']}"
    )
    speed = report.get("speed")
    if speed is not None:
        console.print(
            f"machine speed: a Python loop of {speed['loop_additions']:,} additions took "
            f"{speed['loop_s_before']:.2f} s before the scenarios and {speed['loop_s_after']:.2f} s after"
        )
    for name, rows in report["scenarios"].items():
        if rows and name in TABLES:
            console.print(TABLES[name](rows))
    if report["targets"]:
        console.print(targets_table(report["targets"]))
    for note in report.get("notes", ()):
        console.print(f"[dim]note:[/] {note}")
