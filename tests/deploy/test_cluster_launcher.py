"""``python -m alpha_panda.cluster``: pod name to Bytewax process id and addresses; recovery partitions."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from alpha_panda.cluster import (
    ClusterConfigError,
    ClusterPlace,
    bytewax_command,
    init_recovery,
    place_from_env,
)

POD = {"POD_NAME": "risk-manager-2", "CLUSTER_PROCESSES": "3", "CLUSTER_NAMESPACE": "alpha-panda"}


def test_place_comes_from_the_pod_ordinal_and_the_headless_service() -> None:
    place = place_from_env(POD)
    assert place.process_id == 2
    assert place.addresses == (
        "risk-manager-0.risk-manager.alpha-panda.svc.cluster.local:2101",
        "risk-manager-1.risk-manager.alpha-panda.svc.cluster.local:2101",
        "risk-manager-2.risk-manager.alpha-panda.svc.cluster.local:2101",
    )
    other = place_from_env({**POD, "CLUSTER_SERVICE": "flows", "CLUSTER_PORT": "3000"})
    assert other.addresses[0] == "risk-manager-0.flows.alpha-panda.svc.cluster.local:3000"


def test_explicit_addresses_override_the_service() -> None:
    place = place_from_env({"POD_NAME": "p-1", "CLUSTER_ADDRESSES": "127.0.0.1:5001; 127.0.0.1:5002"})
    assert place == ClusterPlace(1, ("127.0.0.1:5001", "127.0.0.1:5002"))


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "cluster: POD_NAME is not set"),
        (
            {**POD, "POD_NAME": "risk-manager"},
            "cluster: POD_NAME 'risk-manager' is not <statefulset>-<ordinal>",
        ),
        ({**POD, "CLUSTER_PROCESSES": "0"}, "cluster: CLUSTER_PROCESSES must be a positive integer, got '0'"),
        (
            {**POD, "CLUSTER_PROCESSES": "2"},
            "cluster: risk-manager-2 is ordinal 2 but the cluster has 2 processes",
        ),
        ({k: v for k, v in POD.items() if k != "CLUSTER_NAMESPACE"}, "cluster: CLUSTER_NAMESPACE is not set"),
    ],
)
def test_bad_pod_environment_is_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(ClusterConfigError) as caught:
        place_from_env(env)
    assert str(caught.value) == message


def test_bytewax_command_line() -> None:
    place = ClusterPlace(1, ("a:1", "b:1"))
    assert bytewax_command("dataflows.pipeline", place, ["-r", "/recovery"]) == [
        sys.executable,
        "-m",
        "bytewax.run",
        "dataflows.pipeline",
        "-i",
        "1",
        "-a",
        "a:1;b:1",
        "-r",
        "/recovery",
    ]


def _meta(path: Path) -> tuple[int, int]:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT part_index, part_count FROM parts").fetchone()


def test_init_recovery_creates_only_this_process_partition_once(tmp_path: Path) -> None:
    place = ClusterPlace(1, ("a:1", "b:1", "c:1"))
    assert init_recovery(tmp_path, place) == f"created recovery partition 1 of 3 in {tmp_path}"
    assert [p.name for p in tmp_path.glob("part-*.sqlite3")] == ["part-1.sqlite3"]
    assert _meta(tmp_path / "part-1.sqlite3") == (1, 3)
    # A restart keeps the partition (and its snapshots).
    assert init_recovery(tmp_path, place) == f"recovery partition 1 of 3 already in {tmp_path}"
    assert [p.name for p in tmp_path.glob("part-*.sqlite3")] == ["part-1.sqlite3"]


def test_init_recovery_refuses_a_resized_cluster(tmp_path: Path) -> None:
    init_recovery(tmp_path, ClusterPlace(1, ("a:1", "b:1")))
    with pytest.raises(ClusterConfigError) as caught:
        init_recovery(tmp_path, ClusterPlace(1, ("a:1", "b:1", "c:1")))
    assert str(caught.value) == (
        f"cluster: {tmp_path} holds recovery partition(s) 1 of 2, but this process needs "
        "partition 1 of 3; a cluster resized needs fresh recovery volumes"
    )


def test_module_reports_errors_and_exit_code(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "alpha_panda.cluster", "init-recovery", str(tmp_path)],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert (done.returncode, done.stderr) == (2, "error: cluster: POD_NAME is not set\n")
