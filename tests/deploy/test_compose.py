"""deploy/compose.yaml: parses, has every server, stage and monitor, hardened flows, no secrets."""

from __future__ import annotations

import re
from typing import Any

import yaml

from tests.deploy.conftest import DEPLOY

SERVERS = {"redpanda", "postgres", "redis"}
FLOWS = {
    "market-feed": "dataflows.market_feed",
    "pipeline": "dataflows.pipeline",
    "strategy-runner": "dataflows.strategy_runner",
    "risk-manager": "dataflows.risk_manager",
    "trading-engine": "dataflows.trading_engine",
    "portfolio-manager": "dataflows.portfolio_manager",
}
PROFILES = {
    "pipeline": ["all-in-one"],
    "strategy-runner": ["per-stage"],
    "risk-manager": ["per-stage"],
    "trading-engine": ["per-stage"],
    "portfolio-manager": ["per-stage"],
}


def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_compose_has_the_expected_services() -> None:
    services = compose()["services"]
    assert set(services) == SERVERS | set(FLOWS) | {"bootstrap", "prometheus", "grafana"}
    for name in SERVERS:
        assert "healthcheck" in services[name], name
    assert services["bootstrap"]["command"] == ["bootstrap"]
    assert services["bootstrap"]["depends_on"] == {name: {"condition": "service_healthy"} for name in SERVERS}


def test_every_flow_is_hardened_and_recovers_from_its_own_volume() -> None:
    doc = compose()
    services = doc["services"]
    for name, module in FLOWS.items():
        s = services[name]
        assert s["image"] == "alpha-panda:dev"
        assert s["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
        assert (s["user"], s["read_only"], s["cap_drop"]) == ("10001:10001", True, ["ALL"]), name
        assert s["security_opt"] == ["no-new-privileges:true"]
        assert s["tmpfs"] == ["/tmp:size=256m"]  # noqa: S108 - a tmpfs in the container
        assert s["volumes"] == [f"{name}:/recovery"]
        assert name in doc["volumes"]
        assert s["depends_on"] == {"bootstrap": {"condition": "service_completed_successfully"}}
        assert s.get("profiles") == PROFILES.get(name), name
        env = s["environment"]
        assert env["FLOW_MODULE"] == module
        assert (env["POD_NAME"], env["CLUSTER_ADDRESSES"]) == (f"{name}-0", f"{name}:2101")
        assert env["METRICS_PORT"] == "9100"
        (shell, flag, script) = s["entrypoint"]
        assert (shell, flag) == ("sh", "-c")
        assert script.startswith("python -m alpha_panda.cluster init-recovery /recovery && exec ")
        assert '$$FLOW_MODULE" -- -w 1 -r /recovery -s 5 -b 10' in script


def test_passwords_come_from_the_environment_only() -> None:
    text = (DEPLOY / "compose.yaml").read_text()
    for name, s in compose()["services"].items():
        for key, value in (s.get("environment") or {}).items():
            if "PASSWORD" in key or key == "POSTGRES_URL":
                assert re.search(r"\$\{[A-Z_]+:\?set [A-Z_]+\}", str(value)), f"{name}: {key}"
    # No literal credentials in a URL: user:password@ only with a ${...} password.
    for user_info in re.findall(r"//([^/@\s]+)@", text):
        assert re.fullmatch(r"\w+:\$\{[A-Z_]+:\?set [A-Z_]+\}", user_info), user_info


def test_prometheus_scrapes_every_flow_and_grafana_reads_prometheus() -> None:
    services = compose()["services"]
    assert (
        "./prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in services["prometheus"]["volumes"]
    )
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    (static,) = job["static_configs"]
    assert job["metrics_path"] == "/metrics"
    assert static["targets"] == [f"{name}:9100" for name in FLOWS]
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in services["grafana"]["volumes"]
    datasources = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yaml").read_text())
    assert [(d["type"], d["url"]) for d in datasources["datasources"]] == [
        ("prometheus", "http://prometheus:9090")
    ]
