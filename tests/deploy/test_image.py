"""deploy/Dockerfile: hadolint-clean, hardened, and its install steps work in a fresh virtual environment.

This machine has no container engine, so the image is never built here. The
slow test below replays the build stage itself: it reads the Dockerfile's
WORKDIR, COPY and RUN instructions and runs them in a temporary directory,
with ``/opt/venv`` moved there and pip's cache allowed, then starts the
installed CLI and health check.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from prometheus_client import start_http_server

from tests.deploy.conftest import DEPLOY, ROOT, venv_tool

DOCKERFILE = DEPLOY / "Dockerfile"


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        lines.append(pending + line)
        pending = ""
    return [(head.upper(), rest.strip()) for head, _, rest in (line.partition(" ") for line in lines)]


def stages(text: str) -> dict[str, list[tuple[str, str]]]:
    """Instructions per named stage (``FROM image AS name``)."""
    out: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for head, rest in instructions(text):
        if head == "FROM":
            current = out.setdefault(rest.split()[-1], [])
        current.append((head, rest))
    return out


def test_hadolint_finds_nothing() -> None:
    done = subprocess.run(
        [str(venv_tool("hadolint")), "--format", "json", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (done.returncode, json.loads(done.stdout)) == (0, [])


def test_hadolint_is_live(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\nUSER root\n")
    done = subprocess.run(
        [str(venv_tool("hadolint")), "--format", "json", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert {"DL3007", "DL3013", "DL3002"} <= {finding["code"] for finding in json.loads(done.stdout)}


def test_image_is_multi_stage_non_root_read_only_friendly() -> None:
    by_stage = stages(DOCKERFILE.read_text())
    assert list(by_stage) == ["build", "runtime"]
    runtime = by_stage["runtime"]
    final = {head: rest for head, rest in runtime}  # last of each instruction
    assert final["USER"] == "10001:10001"
    assert json.loads(final["ENTRYPOINT"]) == ["alpha-panda"]
    assert json.loads(final["VOLUME"]) == ["/recovery", "/tmp"]  # noqa: S108 - the image's writable volumes
    assert "CMD" in final["HEALTHCHECK"] and "alpha_panda.healthcheck" in final["HEALTHCHECK"]
    # The runtime stage gets the built venv and nothing from the build context.
    copies = [rest for head, rest in runtime if head == "COPY"]
    assert copies == ["--from=build /opt/venv /opt/venv"]
    assert "useradd --system --uid 10001 --gid 10001" in " ".join(
        rest for head, rest in runtime if head == "RUN"
    )
    # Both stages share one base image, so the venv's interpreter path is the same.
    assert by_stage["build"][0][1].split()[0] == runtime[0][1].split()[0] == "${PYTHON_IMAGE}"


def test_build_installs_only_from_the_lock_like_bootstrap() -> None:
    runs = [rest for head, rest in stages(DOCKERFILE.read_text())["build"] if head == "RUN"]
    installs = [r for r in runs if "pip install" in r]
    assert len(installs) == 2
    assert "--require-hashes --no-deps -r requirements/py311.lock" in installs[0]
    assert "--no-deps --no-build-isolation ." in installs[1]
    assert "pip check" in installs[1]
    bootstrap = (ROOT / "scripts" / "bootstrap.sh").read_text()
    assert '--require-hashes --no-deps -r "$lock"' in bootstrap
    assert "--no-deps --no-build-isolation -e ." in bootstrap


def test_the_build_copies_every_package_and_the_context_allows_exactly_that() -> None:
    build = stages(DOCKERFILE.read_text())["build"]
    copied = {source for head, rest in build if head == "COPY" for source in rest.split()[:-1]}
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    wanted = {p.rstrip("*") for p in packages["include"]}
    assert wanted <= copied
    assert {"requirements/py311.lock", "pyproject.toml", "README.md"} <= copied
    allowed = {
        line[1:].rstrip("/")
        for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    assert allowed == copied


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _healthcheck(port: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "alpha_panda.healthcheck"],
        env={**os.environ, "METRICS_PORT": str(port)},
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )


def test_healthcheck_follows_the_metrics_endpoint() -> None:
    serving = _free_port()
    start_http_server(serving, addr="127.0.0.1")
    assert _healthcheck(serving).returncode == 0
    closed = _free_port()
    done = _healthcheck(closed)
    assert done.returncode == 1
    assert done.stderr.startswith(f"unhealthy: http://127.0.0.1:{closed}/metrics unreachable: ")
    # No flow in the container (a one-shot command): nothing to check.
    assert _healthcheck(0).returncode == 0


@pytest.mark.slow
def test_build_stage_installs_and_runs_in_a_fresh_venv(tmp_path: Path) -> None:
    """Replay the build stage: WORKDIR, COPY and RUN, with /opt/venv under tmp_path."""
    venv = tmp_path / "venv"
    workdir = tmp_path
    base_python = Path(getattr(sys, "_base_executable", sys.executable)).resolve().parent
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "VIRTUAL_ENV"))},
        "PATH": f"{base_python}:{os.environ['PATH']}",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    for head, rest in stages(DOCKERFILE.read_text())["build"]:
        if head == "WORKDIR":
            workdir = tmp_path / rest.lstrip("/")
            workdir.mkdir(parents=True, exist_ok=True)
        elif head == "COPY":
            *sources, target = rest.split()
            for source in sources:
                into = workdir / target if target not in ("./", ".") else workdir / Path(source).name
                if (ROOT / source).is_dir():
                    shutil.copytree(ROOT / source, into, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    into.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(ROOT / source, into)
        elif head == "RUN":
            # The only changes: the venv's place, and pip may reuse its cache here.
            command = rest.replace("/opt/venv", str(venv)).replace("--no-cache-dir ", "")
            done = subprocess.run(
                ["bash", "-c", command], cwd=workdir, env=env, capture_output=True, text=True, check=False
            )
            assert done.returncode == 0, (
                f"{shlex.quote(command)}\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
            )
    assert "No broken requirements found." in done.stdout

    run_env = {**env, "PATH": f"{venv / 'bin'}:{env['PATH']}"}
    cli = subprocess.run(
        [str(venv / "bin" / "alpha-panda"), "--help"],
        env=run_env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert cli.returncode == 0, cli.stderr
    for command in ("replay", "bootstrap", "schedule", "backfill", "instruments"):
        assert re.search(rf"│ {command}\s", cli.stdout), command
    # Installed as a package (not editable), with its data files.
    probe = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import connectors, dataflows.pipeline, alpha_panda.cluster, bytewax.run; "
            "from pathlib import Path; "
            "print(Path(connectors.__file__).parent); "
            "print(len(list((Path(connectors.__file__).parent / 'migrations').glob('*.sql'))))",
        ],
        cwd=tmp_path,
        env=run_env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert probe.returncode == 0, probe.stderr
    location, migrations = probe.stdout.split()
    assert Path(location).is_relative_to(venv)
    assert int(migrations) == len(list((ROOT / "connectors" / "migrations").glob("*.sql"))) > 0
