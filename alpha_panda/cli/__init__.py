"""The ``alpha-panda`` command line: one module per command group, assembled here.

The console script (``alpha-panda``), ``python -m alpha_panda`` and
``python -m alpha_panda.cli`` all run :func:`main`. Command modules import
their heavy dependencies inside the commands, so ``--help`` loads no
dataflow, driver or bench engine.
"""

from __future__ import annotations

import typer

from alpha_panda import pnl_cli, reconcile_cli, report_cli, schedules, sweep_cli, zerodha_cli
from alpha_panda.bench.command import bench_command
from alpha_panda.cli import backfill, dlq, feed, instruments, localstack, replay, serve
from alpha_panda.cli.console import fail

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="Alpha Panda: a streaming trading pipeline."
)


@app.callback()
def _configure() -> None:
    """Alpha Panda: a streaming trading pipeline."""
    from connectors.kafka.config import use_client_security
    from dataflows.settings import get_settings

    try:
        use_client_security(get_settings().kafka_security())
    except ValueError as err:  # pydantic's ValidationError: a setting in the environment is invalid
        raise fail(err) from None


replay.register(app)
localstack.register(app)
serve.register(app)
dlq.register(app)
app.command(name="bench")(bench_command)
backfill.register(app)
feed.register(app)
instruments.register(app)
reconcile_cli.register(app)  # before zerodha_cli, which adds `reconcile` only if there is none
report_cli.register(app)
sweep_cli.register(app)
zerodha_cli.register(app)
schedules.register(app)
pnl_cli.register(app)


def main() -> None:
    """Console-script entry point."""
    app()
