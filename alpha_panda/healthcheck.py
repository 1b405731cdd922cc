"""``python -m alpha_panda.healthcheck``: exit 0 while this container's flow serves ``/metrics``.

The image's HEALTHCHECK. Reads ``METRICS_PORT`` (the port a dataflow serves
Prometheus metrics on); 0 or unset means the container runs no flow (a
one-shot command such as ``bootstrap``), which has nothing to check.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def check(port: int, timeout_s: float = 3.0) -> str | None:
    """Return None if ``http://127.0.0.1:<port>/metrics`` answers 200, else why not."""
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # fixed http URL
            if response.status != 200:  # pragma: no cover - urllib raises for error statuses
                return f"{url} answered {response.status}"
    except (urllib.error.URLError, OSError) as err:
        return f"{url} unreachable: {err}"
    return None


def main() -> int:
    """Check the metrics endpoint named by ``METRICS_PORT``; print why when unhealthy."""
    raw = os.environ.get("METRICS_PORT", "0").strip() or "0"
    if not raw.isdigit():
        print(f"unhealthy: METRICS_PORT must be a port number, got {raw!r}", file=sys.stderr)
        return 1
    if int(raw) == 0:
        return 0
    problem = check(int(raw))
    if problem is not None:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
