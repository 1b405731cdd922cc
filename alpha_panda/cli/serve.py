"""``alpha-panda serve``: the read API, /metrics and the live dashboard."""

from __future__ import annotations

from typing import Annotated

import typer

from alpha_panda.cli.console import DataDir, console, fail, local_stack, urls_or_fail
from schemas.errors import AlphaPandaError


def serve(
    host: Annotated[
        str | None, typer.Option(help="Interface to bind (default DASHBOARD_HOST, 127.0.0.1).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(min=0, max=65535, help="Port (default DASHBOARD_PORT, 8765; 0 picks one).")
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Serve the read API, /metrics and the live dashboard; alerts go to ALERT_WEBHOOK_URLS."""
    import time

    from alpha_panda.dashboard.server import start_dashboard
    from dataflows.settings import get_settings

    settings = get_settings()
    updates = {k: v for k, v in (("dashboard_host", host), ("dashboard_port", port)) if v is not None}
    settings = settings.model_copy(update=updates)
    if not settings.dashboard_token.get_secret_value():
        raise fail(ValueError("DASHBOARD_TOKEN is not set: the dashboard refuses to run without a token"))
    urls = urls_or_fail(data_dir)
    try:
        running = start_dashboard(settings, urls, local_stack(data_dir))
    except AlphaPandaError as err:
        raise fail(err) from err
    alerts = "on" if running.watcher is not None else "off (no ALERT_WEBHOOK_URLS)"
    console.print(f"dashboard and API at [bold]{running.url}[/] (token: DASHBOARD_TOKEN); alerts {alerts}")
    try:
        while running.thread.is_alive():
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        running.stop()


def register(app: typer.Typer) -> None:
    """Add ``serve`` to ``app``."""
    app.command()(serve)
