"""Grafana: every panel query names a metric that a live run exports; the flow's counters are exact."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from alpha_panda import orchestration
from alpha_panda.dashboard.server import start_dashboard
from alpha_panda.localstack import free_port
from connectors.postgres import ledger_counts
from tests.dashboard.conftest import ROOT
from tests.integration.live_world import World, simulated_ticks, wait_until

pytestmark = pytest.mark.integration

GRAFANA = ROOT / "deploy" / "grafana"
METRIC = re.compile(r"\balpha_panda_[a-z0-9_]+")


def panel_metrics(dashboard: dict) -> dict[str, set[str]]:
    """Metric names in each panel's queries."""
    return {
        panel["title"]: {name for target in panel["targets"] for name in METRIC.findall(target["expr"])}
        for panel in dashboard["panels"]
    }


def exported(text: str) -> set[str]:
    """Every series name a scrape of ``text`` can query (counters as ``_total``, histograms by part)."""
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names |= {sample.name for sample in family.samples}
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            names |= {f"{family.name}_{part}" for part in ("bucket", "sum", "count")}
        else:
            names.add(family.name)
    return names


def sample(text: str, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def test_dashboard_and_scrape_config_are_well_formed() -> None:
    dashboard = json.loads((GRAFANA / "alpha-panda.json").read_text())
    assert dashboard["uid"] == "alpha-panda"
    assert all(panel["targets"] and all(t["expr"] for t in panel["targets"]) for panel in dashboard["panels"])
    assert all(names for names in panel_metrics(dashboard).values()), (
        "every panel queries an alpha_panda metric"
    )
    scrape = yaml.safe_load((GRAFANA / "prometheus.yml").read_text())
    assert [job["job_name"] for job in scrape["scrape_configs"]] == [
        "alpha-panda-dataflows", "alpha-panda-serve", "alpha-panda-local",
    ]  # fmt: skip
    assert scrape["scrape_configs"][1]["authorization"]["type"] == "Bearer"


def test_every_panel_names_a_metric_a_live_run_exports(world: World, tmp_path: Path) -> None:
    world.seed()
    lines = simulated_ticks(ticks=150, seed=21)
    world.produce_ticks([*lines, b"not json"])
    port = free_port()
    orchestration.start_dataflow(world.stack, "pipeline", world.urls, env={"METRICS_PORT": str(port)})
    flow_metrics = f"http://127.0.0.1:{port}/metrics"

    def scrape() -> str:
        try:
            return httpx.get(flow_metrics).text
        except httpx.HTTPError:
            return ""

    def settled() -> bool:
        text = scrape()
        return (
            sample(text, "alpha_panda_messages_in_total", topic="market.ticks") == len(lines) + 1
            and sample(text, "alpha_panda_fills_total") == ledger_counts(world.urls.postgres)["fills"] > 0
            and all(
                sample(text, "alpha_panda_signals_total", broker=b) == len(world.topic(f"{b}.signals.raw"))
                for b in ("paper", "zerodha")
            )
        )

    wait_until(settled, 90, "the flow to read every tick and its counters to match the topics and ledger")
    wait_until(lambda: "alpha_panda_input_lag{" in scrape(), 20, "the input lag reporter (every 5 s)")
    wait_until(
        lambda: sample(scrape(), "alpha_panda_state_snapshot_seconds_count", step="trading") > 0,
        30,
        "an epoch close to snapshot the trading state (every 5 s)",
    )
    settings = world.settings(dashboard_token="t", dashboard_port=0)
    running = start_dashboard(settings, world.urls, world.stack, health_every_s=1.0)
    try:
        assert running.sources.monitor.wait_ready(30)
        wait_until(lambda: running.sources.monitor.latest.lag != [], 20, "a health check with the flow's lag")
        running.sources.monitor.refresh()  # and the account gauges after it
        serve = httpx.get(running.url + "metrics", headers={"Authorization": "Bearer t"})
        assert serve.status_code == 200
        serve_text = serve.text
    finally:
        running.stop()
    flow_text = scrape()
    (tmp_path / "pipeline.prom").write_text(flow_text)

    names = exported(flow_text) | exported(serve_text)
    dashboard = json.loads((GRAFANA / "alpha-panda.json").read_text())
    missing = {
        title: sorted(used - names) for title, used in panel_metrics(dashboard).items() if used - names
    }
    assert missing == {}

    # The flow's counters equal what it did.
    topics = {b: len(world.topic(f"{b}.signals.raw")) for b in ("paper", "zerodha")}
    for broker, count in topics.items():
        assert sample(flow_text, "alpha_panda_signals_total", broker=broker) == count > 0
        assert sample(flow_text, "alpha_panda_events_total", topic=f"{broker}.signals.raw") == count
    assert sample(flow_text, "alpha_panda_dlq_messages_total", topic="market.ticks", error_type="poison") == 1
    assert 'alpha_panda_input_lag{partition="0",topic="market.ticks"} 0.0' in flow_text
    assert sample(flow_text, "alpha_panda_stage_latency_seconds_count", stage="filled") == sample(
        flow_text, "alpha_panda_fills_total"
    )
    # From each tick's Kafka create time: one observation per signal and per fill, all from market.ticks.
    create = "alpha_panda_stage_create_latency_seconds"
    signals = sample(flow_text, "alpha_panda_signals_total")
    assert sample(flow_text, f"{create}_count", stage="signal", input="market.ticks") == signals > 0
    assert sample(flow_text, f"{create}_count", stage="filled", input="market.ticks") == sample(
        flow_text, "alpha_panda_fills_total"
    )
    assert sample(flow_text, f"{create}_count") == sample(flow_text, f"{create}_count", input="market.ticks")
    assert sample(flow_text, f"{create}_sum", stage="signal") > 0
    assert sample(flow_text, "alpha_panda_state_snapshot_seconds_count", step="trading") > 0
    assert sample(flow_text, "alpha_panda_state_snapshot_seconds_sum", step="trading") > 0
    assert sample(serve_text, "alpha_panda_dataflow_up", dataflow="pipeline") == 1
    assert sample(serve_text, "alpha_panda_server_up") == 3
    fills = ledger_counts(world.urls.postgres)["fills"]
    assert (
        sample(serve_text, "alpha_panda_account_fills")
        == fills
        == sample(flow_text, "alpha_panda_fills_total")
    )
