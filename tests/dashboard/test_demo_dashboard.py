"""`alpha-panda demo --dashboard`: prints the URL, keeps the stack and the page up, stops on Ctrl-C."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from alpha_panda.localstack import LocalStack
from tests.integration.live_world import wait_until

pytestmark = pytest.mark.integration

URL = re.compile(r"the stack stays up; dashboard at (http://127\.0\.0\.1:\d+/)#token=([A-Za-z0-9_-]+)")


def test_demo_dashboard_serves_after_the_run_until_interrupted() -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="alpha-panda-demo-dash-"))
    log = data_dir.with_suffix(".log")
    env = {k: v for k, v in os.environ.items() if k not in ("DASHBOARD_TOKEN",)}
    env |= {"DASHBOARD_PORT": "0", "DASHBOARD_TOKEN": ""}
    argv = [sys.executable, "-m", "alpha_panda.cli", "demo", "--duration", "3", "--rate", "300",
            "--instruments", "4", "--dashboard", "--data-dir", str(data_dir)]  # fmt: skip
    with log.open("wb") as out:
        demo = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        wait_until(
            lambda: URL.search(log.read_text()) is not None, 150, "the demo to print its dashboard URL"
        )
        match = URL.search(log.read_text())
        assert match is not None
        url, token = match.groups()
        assert httpx.get(url + "api/overview").status_code == 401
        overview = httpx.get(url + "api/overview", headers={"Authorization": f"Bearer {token}"}).json()
        assert {a["broker"] for a in overview["accounts"]} == {"paper", "zerodha"}
        assert sum(a["fills"] for a in overview["accounts"]) > 0
        assert overview["equity"]["paper"], "equity history from the live run"
        assert [s["name"] for s in overview["health"]["servers"] if s["up"]] == ["kafka", "redis", "postgres"]
        assert demo.poll() is None, "still serving"
        time.sleep(1)
        assert demo.poll() is None

        demo.send_signal(signal.SIGINT)
        assert demo.wait(timeout=60) == 0
        with pytest.raises(httpx.ConnectError):
            httpx.get(url + "api/overview")
        assert [row.name for row in LocalStack(data_dir).status() if row.alive] == []
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        LocalStack(data_dir).down()
        shutil.rmtree(data_dir, ignore_errors=True)
        log.unlink(missing_ok=True)
