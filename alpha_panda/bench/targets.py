"""The targets a bench run is checked against (issue 14, and issue 6 where 14 sets none)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Comparison = Literal[">=", "<=", "=="]


@dataclass(frozen=True)
class Target:
    """A threshold on one measured figure; ``source`` says which goal set it."""

    threshold: float
    comparison: Comparison
    source: str

    def met(self, measured: float) -> bool:
        """Whether ``measured`` meets the target."""
        if self.comparison == ">=":
            return measured >= self.threshold
        if self.comparison == "<=":
            return measured <= self.threshold
        return measured == self.threshold


TARGETS: dict[str, Target] = {
    "replay_ticks_per_s_100": Target(300_000, ">=", "issue 14 goal 3: both strategies, both brokers"),
    "replay_ticks_per_s_10000": Target(300_000, ">=", "issue 14 goal 3: both strategies, both brokers"),
    "pipeline_over_bare": Target(1.0, ">=", "issue 14 goal 3: at least the per-item bare flow"),
    "two_process_speedup": Target(1.6, ">=", "issue 14 goal 4: at 10,000 instruments"),
    "peer_peak_rss_mib": Target(175, "<=", "issue 14 goal 2: on the 1M-tick peer tape"),
    "peer_two_process_speedup": Target(
        1.6, ">=", "issue 14 goal 4: replay --processes 2 vs 1 on the peer tape (goal: at 10,000)"
    ),
    "state_bytes_per_strategy_instrument": Target(2048, "<=", "issue 6"),
    "live_all_in_one_over_raw_consume": Target(0.6, ">=", "issue 14 goal 5: of the raw consume rate"),
    "live_all_in_one_tick_to_fill_p99_ms_at_1000": Target(10.0, "<=", "issue 14 goal 5"),
    "live_per_stage_tick_to_fill_p99_ms_at_1000": Target(40.0, "<=", "issue 6"),
}
"""Every target by name, on the 2-core bench machine."""

NOTES = (
    "issue 14 goal 1: peer tape (100 and 10,000 instruments) at >= 10x NautilusTrader and backtrader. "
    "The bench does not run the peers: compare the peers scenario's ticks/s with "
    "`bash ../shared/peers/run_all.sh` on the same machine in the same run (bench/peers-*.txt).",
)
"""Targets the bench cannot check by itself."""


def check_targets(results: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Compare measured figures with :data:`TARGETS` (only those measured in this run)."""
    checks: list[dict[str, Any]] = []

    def check(name: str, measured: float, label: str = "", threshold: float | None = None) -> None:
        # No named target: an equality with a figure of the same run (the reference's fills).
        target = TARGETS.get(name) or Target(float(threshold or 0), "==", "issue 14 goal 1")
        checks.append(
            {
                "target": f"{name}{f' ({label})' if label else ''}",
                "measured": measured,
                "comparison": target.comparison,
                "threshold": target.threshold,
                "met": target.met(measured),
                "source": target.source,
            }
        )

    replay = {row["instruments"]: row for row in results.get("replay", [])}
    for n in (100, 10_000):
        if n in replay:
            check(f"replay_ticks_per_s_{n}", replay[n]["pipeline"]["ticks_per_s"])
    if replay:
        check("pipeline_over_bare", min(row["pipeline_over_bare"] for row in replay.values()), "worst size")
    for row in results.get("scaling", []):
        if row["processes"] == 2:
            check("two_process_speedup", row["speedup"], f"{row['instruments']:,} instruments")
    memory = results.get("memory", [])
    if memory:
        worst = max(row["bytes_per_pair"] for row in memory)
        check("state_bytes_per_strategy_instrument", worst, "worst size")
    for row in results.get("peers", []):
        size = f"{row['instruments']:,} instruments, {row['ticks']:,} ticks"
        check("peer_fills_equal_reference", row["replay"]["fills"], size, threshold=row["reference"]["fills"])
        check("peer_peak_rss_mib", row["replay"]["peak_rss_bytes"] / 2**20, size)
        if row.get("one_process"):
            check("peer_two_process_speedup", row["one_process"]["two_process_speedup"], size)
    _live_checks(results.get("live", []), check)
    return checks


def _live_checks(rows: list[dict[str, Any]], check: Any) -> None:
    raw = next((row for row in rows if row["kind"] == "raw_broker"), None)
    for row in rows:
        if row["kind"] == "sustained" and row["mode"] == "all-in-one" and raw is not None:
            check("live_all_in_one_over_raw_consume", row["ticks_per_s"] / raw["consume_per_s"])
        if row["kind"] == "latency" and row["rate"] == 1_000 and "p99" in row["tick_to_fill_ms"]:
            check(
                f"live_{row['mode'].replace('-', '_')}_tick_to_fill_p99_ms_at_1000",
                row["tick_to_fill_ms"]["p99"],
            )
