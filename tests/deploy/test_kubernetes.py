"""deploy/k8s: every overlay renders, passes the Kubernetes schemas, and meets the pod policy.

The policy is this project's own (no pod without runAsNonRoot, limits and
probes, per-stage Secret keys, a headless Service and PDB per StatefulSet...),
asserted on the objects ``kubectl kustomize`` renders.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import kubernetes_validate
import pytest

from alpha_panda.cluster import place_from_env
from tests.deploy.conftest import K8S, kustomize

Objects = list[dict[str, Any]]
KUBERNETES_VERSION = "1.37.0"

FLOW_MODULES = {
    "pipeline": "dataflows.pipeline",
    "strategy-runner": "dataflows.strategy_runner",
    "risk-manager": "dataflows.risk_manager",
    "trading-engine": "dataflows.trading_engine",
    "portfolio-manager": "dataflows.portfolio_manager",
    "market-feed": "dataflows.market_feed",
    "zerodha-updates": "dataflows.zerodha_updates",
}
PER_STAGE = {"strategy-runner", "risk-manager", "trading-engine", "portfolio-manager"}
# Exactly the Secret keys each workload gets (one secretKeyRef each).
SECRET_KEYS = {
    "alpha-panda-serve": {"DASHBOARD_TOKEN", "POSTGRES_URL", "REDIS_URL", "ALERT_WEBHOOK_URLS"},
    "pipeline": {"POSTGRES_URL", "REDIS_URL", "KITE_API_KEY", "KITE_ACCESS_TOKEN"},
    "strategy-runner": {"POSTGRES_URL", "REDIS_URL"},
    "risk-manager": {"POSTGRES_URL", "REDIS_URL"},
    "trading-engine": {"POSTGRES_URL", "REDIS_URL", "KITE_API_KEY", "KITE_ACCESS_TOKEN"},
    "portfolio-manager": {"POSTGRES_URL", "REDIS_URL"},
    "market-feed": {
        "POSTGRES_URL",
        "REDIS_URL",
        "KITE_API_KEY",
        "KITE_ACCESS_TOKEN",
        "ALPACA_API_KEY",
        "ALPACA_SECRET_KEY",
    },
    "alpha-panda-bootstrap": {"POSTGRES_URL", "REDIS_URL"},
    "start-of-day": {"POSTGRES_URL", "REDIS_URL", "KITE_API_KEY", "KITE_ACCESS_TOKEN"},
    "intraday": {"POSTGRES_URL", "REDIS_URL", "ALPACA_API_KEY", "ALPACA_SECRET_KEY"},
    "end-of-day": {"POSTGRES_URL", "REDIS_URL"},
    "zerodha-updates": {"POSTGRES_URL", "REDIS_URL", "KITE_API_KEY", "KITE_ACCESS_TOKEN", "KITE_API_SECRET"},
}


def of_kind(objects: Objects, kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def pod_specs(objects: Objects) -> Iterator[tuple[str, dict[str, Any]]]:
    """(workload name, pod spec) of every object that makes pods."""
    for o in objects:
        if o["kind"] in ("StatefulSet", "Deployment", "DaemonSet", "Job"):
            yield o["metadata"]["name"], o["spec"]["template"]["spec"]
        elif o["kind"] == "CronJob":
            yield o["metadata"]["name"], o["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*spec.get("initContainers", []), *spec["containers"]]


def env_value(container: dict[str, Any], name: str) -> str:
    values = [e["value"] for e in container.get("env", []) if e["name"] == name and "value" in e]
    assert len(values) == 1, f"{container['name']}: {name} set {len(values)} times"
    return str(values[0])


# --- rendering and schemas --------------------------------------------------------------------


def test_every_overlay_renders_the_expected_objects(overlay: tuple[str, Objects]) -> None:
    name, objects = overlay
    flows = set(of_kind(objects, "StatefulSet"))
    expected_flows = {"pipeline", "market-feed"} if name == "local" else PER_STAGE | {"market-feed"}
    live = name == "production-live"  # live Zerodha orders, and the flow bringing Kite's updates back
    assert flows == expected_flows | ({"zerodha-updates"} if live else set())
    assert set(of_kind(objects, "CronJob")) == {"start-of-day", "intraday", "end-of-day"}
    assert set(of_kind(objects, "Job")) == {"alpha-panda-bootstrap"}
    postbacks = {"zerodha-postbacks"} if live else set()
    assert set(of_kind(objects, "Service")) == flows | {"alpha-panda-serve"} | postbacks
    assert set(of_kind(objects, "Deployment")) == {"alpha-panda-serve"}
    assert set(of_kind(objects, "PodDisruptionBudget")) == flows
    assert set(of_kind(objects, "NetworkPolicy")) == {"alpha-panda", "alpha-panda-broker-apis"} | (
        {"alpha-panda-postbacks"} if live else set()
    )
    assert set(of_kind(objects, "ServiceMonitor")) == (set() if name == "local" else {"alpha-panda"})
    config = of_kind(objects, "ConfigMap")["alpha-panda-config"]["data"]
    assert config.get("ZERODHA_LIVE_TRADING", "false") == ("true" if live else "false")
    assert {o["metadata"].get("namespace") for o in objects if o["kind"] != "Namespace"} == {"alpha-panda"}


def test_all_in_one_and_per_stage_never_run_together(overlay: tuple[str, Objects]) -> None:
    flows = set(of_kind(overlay[1], "StatefulSet"))
    assert not ("pipeline" in flows and flows & PER_STAGE)


def test_every_object_passes_the_kubernetes_schema(overlay: tuple[str, Objects]) -> None:
    checked = 0
    for o in overlay[1]:
        if o["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # a CRD: checked by test_service_monitor_scrapes_every_flow
        kubernetes_validate.validate(o, KUBERNETES_VERSION, strict=True)
        checked += 1
    assert checked == len([o for o in overlay[1] if o["kind"] != "ServiceMonitor"])


def test_schema_validation_rejects_a_broken_object() -> None:
    # The validator is live: a typo'd field fails strict validation.
    job = of_kind(kustomize(K8S / "overlays" / "local"), "Job")["alpha-panda-bootstrap"]
    job["spec"]["template"]["spec"]["containers"][0]["resorces"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(job, KUBERNETES_VERSION, strict=True)


# --- pod policy -------------------------------------------------------------------------------


def test_every_pod_is_restricted(overlay: tuple[str, Objects]) -> None:
    seen = 0
    for name, spec in pod_specs(overlay[1]):
        seen += 1
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True, name
        assert (pod["runAsUser"], pod["runAsGroup"], pod["fsGroup"]) == (10001, 10001, 10001), name
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec["automountServiceAccountToken"] is False, name
        assert spec["serviceAccountName"] == "alpha-panda", name
        for c in containers(spec):
            where = f"{name}/{c['name']}"
            sc = c["securityContext"]
            assert sc["runAsNonRoot"] is True, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["capabilities"] == {"drop": ["ALL"]}, where
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, where
            for part in ("requests", "limits"):
                assert set(c["resources"][part]) >= {"cpu", "memory"}, f"{where}: {part}"
            mounts = {m["mountPath"] for m in c["volumeMounts"]}
            assert mounts <= {"/recovery", "/tmp"}, where  # noqa: S108 - the pods' writable volumes
            assert "/tmp" in mounts, where  # noqa: S108
    # + the dashboard's Deployment, the Job and three CronJobs
    assert seen == len(of_kind(overlay[1], "StatefulSet")) + 5


def test_flows_have_probes_on_the_metrics_port(overlay: tuple[str, Objects]) -> None:
    config = of_kind(overlay[1], "ConfigMap")["alpha-panda-config"]["data"]
    for name, sts in of_kind(overlay[1], "StatefulSet").items():
        (flow,) = sts["spec"]["template"]["spec"]["containers"]
        ports = {p["name"]: p["containerPort"] for p in flow["ports"]}
        postback = {"postback": int(config["ZERODHA_POSTBACK_PORT"])} if name == "zerodha-updates" else {}
        assert ports == {"cluster": 2101, "metrics": int(config["METRICS_PORT"]), **postback}, name
        for probe in ("readinessProbe", "livenessProbe"):
            assert flow[probe]["httpGet"] == {"path": "/metrics", "port": "metrics"}, f"{name}: {probe}"


def test_secrets_are_per_stage_keys_never_the_whole_secret(overlay: tuple[str, Objects]) -> None:
    for name, spec in pod_specs(overlay[1]):
        keys: set[str] = set()
        for c in containers(spec):
            for source in c.get("envFrom", []):
                assert "secretRef" not in source, f"{name}/{c['name']} mounts a whole Secret"
                assert source["configMapRef"]["name"] == "alpha-panda-config"
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref is not None:
                    assert ref["name"] == "alpha-panda-secrets"
                    assert ref["key"] == e["name"], f"{name}: {e['name']} from key {ref['key']}"
                    keys.add(ref["key"])
                else:
                    assert "://" not in str(e.get("value", "")), f"{name}: {e['name']} looks like a URL"
        assert keys == SECRET_KEYS[name], name
    # No Secret object is rendered: it is created outside git.
    assert not of_kind(overlay[1], "Secret")


# --- flows as Bytewax clusters -------------------------------------------------------------------


def test_each_flow_is_a_bytewax_cluster_with_recovery(overlay: tuple[str, Objects]) -> None:
    config = of_kind(overlay[1], "ConfigMap")["alpha-panda-config"]["data"]
    services = of_kind(overlay[1], "Service")
    for name, sts in of_kind(overlay[1], "StatefulSet").items():
        spec = sts["spec"]
        replicas = spec["replicas"]
        assert spec["podManagementPolicy"] == "Parallel", name
        assert replicas <= int(config["TOPIC_PARTITIONS"]), name
        pod = spec["template"]["spec"]
        (init,) = pod["initContainers"]
        (flow,) = pod["containers"]
        assert init["command"] + init["args"] == [
            "python",
            "-m",
            "alpha_panda.cluster",
            "init-recovery",
            "/recovery",
        ]
        assert flow["command"] == ["python", "-m", "alpha_panda.cluster"]
        assert flow["args"] == [
            "run",
            FLOW_MODULES[name],
            "--",
            "-w",
            "1",
            "-r",
            "/recovery",
            "-s",
            "5",
            "-b",
            "10",
        ]
        assert (
            env_value(init, "CLUSTER_PROCESSES") == env_value(flow, "CLUSTER_PROCESSES") == str(replicas)
        ), name
        (claim,) = spec["volumeClaimTemplates"]
        assert claim["metadata"]["name"] == "recovery"
        # The headless Service the addresses resolve through.
        service = services[spec["serviceName"]]["spec"]
        assert service["clusterIP"] == "None", name
        assert service["publishNotReadyAddresses"] is True, name
        assert service["selector"] == spec["selector"]["matchLabels"], name
        assert service["selector"].items() <= sts["spec"]["template"]["metadata"]["labels"].items(), name
        assert {p["name"]: p["port"] for p in service["ports"]} == {"cluster": 2101, "metrics": 9100}, name


def test_pod_environment_gives_bytewax_the_headless_service_addresses(overlay: tuple[str, Objects]) -> None:
    for name, sts in of_kind(overlay[1], "StatefulSet").items():
        flow = sts["spec"]["template"]["spec"]["containers"][0]
        replicas = sts["spec"]["replicas"]
        env = {
            "POD_NAME": f"{name}-{replicas - 1}",  # downward API: metadata.name
            "CLUSTER_NAMESPACE": sts["metadata"]["namespace"],
            "CLUSTER_PROCESSES": env_value(flow, "CLUSTER_PROCESSES"),
            "CLUSTER_PORT": env_value(flow, "CLUSTER_PORT"),
        }
        place = place_from_env(env)
        assert place.process_id == replicas - 1
        assert place.addresses == tuple(
            f"{name}-{n}.{sts['spec']['serviceName']}.alpha-panda.svc.cluster.local:2101"
            for n in range(replicas)
        )


def test_disruption_budgets_cover_each_flow(overlay: tuple[str, Objects]) -> None:
    budgets = of_kind(overlay[1], "PodDisruptionBudget")
    for name, sts in of_kind(overlay[1], "StatefulSet").items():
        assert budgets[name]["spec"] == {"maxUnavailable": 1, "selector": sts["spec"]["selector"]}


# --- network and monitoring -------------------------------------------------------------------


def _ports(rules: list[dict[str, Any]]) -> set[tuple[str, int]]:
    return {(p["protocol"], p["port"]) for rule in rules for p in rule["ports"]}


def test_network_policy_allows_only_servers_scraping_and_peers(overlay: tuple[str, Objects]) -> None:
    policies = of_kind(overlay[1], "NetworkPolicy")
    default = policies["alpha-panda"]["spec"]
    assert default["podSelector"] == {}
    assert default["policyTypes"] == ["Ingress", "Egress"]
    assert _ports(default["ingress"]) == {("TCP", 9100), ("TCP", 2101), ("TCP", 8765)}
    dashboard = next(r for r in default["ingress"] if r["ports"][0]["port"] == 8765)
    assert dashboard["from"] == [{"namespaceSelector": {}}]  # the token guards every route
    scrape = next(r for r in default["ingress"] if r["ports"][0]["port"] == 9100)
    assert scrape["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]
    assert _ports(default["egress"]) == {
        ("UDP", 53),
        ("TCP", 53),
        ("TCP", 9092),
        ("TCP", 9093),
        ("TCP", 6379),
        ("TCP", 5432),
        ("TCP", 2101),
    }
    apis = policies["alpha-panda-broker-apis"]["spec"]
    assert apis["policyTypes"] == ["Egress"]
    assert _ports(apis["egress"]) == {("TCP", 443)}
    (selector,) = apis["podSelector"]["matchExpressions"]
    # Only pods that call a market-data or broker API get HTTPS out.
    assert set(selector["values"]) == {
        "market-feed",
        "trading-engine",
        "pipeline",
        "zerodha-updates",
        "start-of-day",
        "intraday",
        "end-of-day",
    }


def test_kite_postbacks_reach_only_the_update_flow() -> None:
    objects = kustomize(K8S / "overlays" / "production-live")
    sts = of_kind(objects, "StatefulSet")["zerodha-updates"]
    assert sts["spec"]["replicas"] == 1  # one poller and publisher of Kite's order book
    service = of_kind(objects, "Service")["zerodha-postbacks"]["spec"]
    assert service["selector"] == sts["spec"]["selector"]["matchLabels"]
    assert service["ports"] == [{"name": "postback", "port": 8080, "targetPort": "postback"}]
    policy = of_kind(objects, "NetworkPolicy")["alpha-panda-postbacks"]["spec"]
    assert policy["podSelector"] == {"matchLabels": {"app.kubernetes.io/component": "zerodha-updates"}}
    assert (policy["policyTypes"], _ports(policy["ingress"])) == (["Ingress"], {("TCP", 8080)})
    config = of_kind(objects, "ConfigMap")["alpha-panda-config"]["data"]
    assert (config["ZERODHA_POSTBACK_HOST"], config["ZERODHA_POSTBACK_PORT"]) == ("0.0.0.0", "8080")  # noqa: S104


@pytest.mark.parametrize("name", ["production", "production-live"])
def test_service_monitor_scrapes_every_flow(name: str) -> None:
    objects = kustomize(K8S / "overlays" / name)
    monitor = of_kind(objects, "ServiceMonitor")["alpha-panda"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("metrics", "/metrics")
    selected = {
        name
        for name, svc in of_kind(objects, "Service").items()
        if monitor["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
        and "metrics" in {p["name"] for p in svc["spec"]["ports"]}
    }
    assert selected == set(of_kind(objects, "StatefulSet"))


# --- schedules --------------------------------------------------------------------------------


def test_schedules_run_the_alpha_panda_schedule_commands(overlay: tuple[str, Objects]) -> None:
    name, objects = overlay
    crons = of_kind(objects, "CronJob")
    expected = {"start-of-day": "30 8 * * 1-5", "intraday": "0 10-15 * * 1-5", "end-of-day": "0 16 * * 1-5"}
    for job, schedule in expected.items():
        spec = crons[job]["spec"]
        assert (spec["schedule"], spec["timeZone"], spec["concurrencyPolicy"]) == (
            schedule,
            "Asia/Kolkata",
            "Forbid",
        )
        assert spec.get("suspend", False) is (name == "local")
        (container,) = spec["jobTemplate"]["spec"]["template"]["spec"]["containers"]
        assert container["args"] == ["schedule", job]
        assert "command" not in container  # the image's entry point: alpha-panda
    bootstrap = of_kind(objects, "Job")["alpha-panda-bootstrap"]["spec"]["template"]["spec"]["containers"][0]
    assert bootstrap["args"] == ["bootstrap"]


def test_images_are_pinned_per_overlay(overlay: tuple[str, Objects]) -> None:
    name, objects = overlay
    images = {c["image"] for _, spec in pod_specs(objects) for c in containers(spec)}
    assert images == {"alpha-panda:dev" if name == "local" else "registry.example.com/alpha-panda:0.1.0"}


def test_one_shot_pods_are_bounded_instead_of_probed(overlay: tuple[str, Objects]) -> None:
    # Probes are for the long-running flows; a Job or CronJob run is bounded in time and retries.
    jobs = [o["spec"] for o in overlay[1] if o["kind"] == "Job"]
    jobs += [o["spec"]["jobTemplate"]["spec"] for o in overlay[1] if o["kind"] == "CronJob"]
    assert len(jobs) == 4
    for spec in jobs:
        assert 0 < spec["activeDeadlineSeconds"] <= 1800
        assert 0 < spec["backoffLimit"] <= 6
        assert spec["template"]["spec"]["restartPolicy"] in ("Never", "OnFailure")
