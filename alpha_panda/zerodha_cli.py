"""Zerodha commands: ``halt``, ``resume``, ``kite login``, ``kite reconcile``, ``reconcile --broker zerodha``.

``register(app)`` adds them to the ``alpha-panda`` CLI. Servers come from
``POSTGRES_URL``/``REDIS_URL`` or the local stack; Kite from ``KITE_*``.
No command prints the access token or the API secret.
"""

from __future__ import annotations

import getpass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import SecretStr
from rich.console import Console
from rich.table import Table

from schemas.errors import AlphaPandaError

console = Console(width=None if Console().is_terminal else 120)
err_console = Console(stderr=True)
kite_app = typer.Typer(no_args_is_help=True, help="Zerodha Kite Connect: daily login, reconciliation.")

DataDir = Annotated[Path | None, typer.Option(help="State directory (default: DATA_DIR, .alpha-panda).")]
Broker = Annotated[str | None, typer.Option(help="Only this broker (paper, zerodha); default every broker.")]
Strategy = Annotated[str | None, typer.Option(help="Only this strategy id; default every strategy.")]


def _say(text: str) -> None:
    # Whole lines, never wrapped: paths and reasons stay greppable.
    console.print(text, soft_wrap=True, highlight=False)


def _fail(err: Exception) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {err}", soft_wrap=True, highlight=False)
    return typer.Exit(code=2)


def _settings(data_dir: Path | None) -> Any:
    from dataflows.settings import get_settings

    settings = get_settings()
    return settings.model_copy(update={"data_dir": data_dir}) if data_dir else settings


def _servers(settings: Any) -> Any:
    from dataflows.live import resolve_servers

    return resolve_servers(settings)


def _migrated(servers: Any) -> None:
    from connectors.postgres import apply_migrations

    apply_migrations(servers.postgres)


def _check_broker(broker: str | None) -> None:
    from schemas.topics import BROKERS

    if broker is not None and broker not in BROKERS:
        raise _fail(ValueError(f"--broker must be one of {list(BROKERS)}, got {broker!r}"))


def _require_kite(settings: Any) -> None:
    if not (settings.kite_api_key.get_secret_value() and settings.kite_access_token.get_secret_value()):
        raise _fail(ValueError("no Kite credentials: set KITE_API_KEY and run `alpha-panda kite login`"))


def halt_command(
    broker: Broker = None,
    strategy: Strategy = None,
    reason: Annotated[str, typer.Option(help="Why (shown in every rejection).")] = "",
    cancel_open: Annotated[
        bool, typer.Option("--cancel-open", help="Also cancel our open Zerodha orders.")
    ] = False,
    data_dir: DataDir = None,
) -> None:
    """Halt a broker, a strategy, or everything: new signals are rejected (halted) within 1 s."""
    from connectors.kite.halts import set_halt
    from operators.halts import ANY, Halt

    _check_broker(broker)
    settings = _settings(data_dir)
    try:
        servers = _servers(settings)
        _migrated(servers)
        halt = Halt(broker or ANY, strategy or ANY, reason or "alpha-panda halt")
        halts = set_halt(servers.postgres, servers.redis, halt, by=getpass.getuser())
        _say(f"halted {halt.scope}: new signals are rejected (halted) and no live order is placed")
        _say(f"halts in force: {', '.join(h.scope for h in halts.halts)}")
        if cancel_open and (broker or ANY) in (ANY, "zerodha"):
            _cancel_open(settings, servers, strategy)
    except AlphaPandaError as err:
        raise _fail(err) from err


def _cancel_open(settings: Any, servers: Any, strategy: str | None) -> None:
    from connectors.kite.cancel import cancel_open_orders
    from connectors.kite.store import ZerodhaStore
    from dataflows.zerodha import kite_client

    _require_kite(settings)
    store = ZerodhaStore(servers.postgres)
    try:
        with kite_client(settings) as client:
            done = cancel_open_orders(client, store, strategy)
    finally:
        store.close()
    refused = [c for c in done if c.error]
    _say(f"cancelled {len(done) - len(refused)} open zerodha order(s)")
    for item in refused:
        _say(f"[red]not cancelled {item.kite_order_id} ({item.strategy_id}): {item.error}[/]")


def resume_command(broker: Broker = None, strategy: Strategy = None, data_dir: DataDir = None) -> None:
    """Lift halts (every halt matching --broker/--strategy; all of them by default)."""
    from connectors.kite.halts import clear_halts

    _check_broker(broker)
    settings = _settings(data_dir)
    try:
        servers = _servers(settings)
        _migrated(servers)
        lifted = clear_halts(servers.postgres, servers.redis, broker, strategy)
    except AlphaPandaError as err:
        raise _fail(err) from err
    _say(f"resumed: {', '.join(lifted)}" if lifted else "nothing was halted")


@kite_app.command("login")
def kite_login(
    request_token: Annotated[
        str | None, typer.Option(help="The request_token Kite appended to your redirect URL.")
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Print the login URL, exchange the request_token for today's access token, store it (0600)."""
    from connectors.kite.client import KiteClient, login_url
    from connectors.kite.session import store_access_token

    settings = _settings(data_dir)
    if not (settings.kite_api_key.get_secret_value() and settings.kite_api_secret.get_secret_value()):
        raise _fail(ValueError("kite login needs KITE_API_KEY and KITE_API_SECRET"))
    _say(f"1. log in at {login_url(settings.kite_api_key, settings.kite_login_url)}")
    _say("2. Kite redirects to your app's URL with ?request_token=...")
    token = request_token or typer.prompt("request_token", hide_input=True)
    try:
        with KiteClient(settings.kite_api_key, SecretStr(""), base_url=settings.kite_api_url) as client:
            session = client.generate_session(token.strip(), settings.kite_api_secret)
        path = store_access_token(settings.data_dir, SecretStr(str(session["access_token"])))
    except AlphaPandaError as err:
        raise _fail(err) from err
    _say(f"access token for {session.get('user_id', '?')} stored in {path} (mode 0600)")
    _say(
        "it expires at about 06:00 IST tomorrow: run `alpha-panda kite login` every trading day, "
        "then restart the live flows (they read the token at start-up)"
    )


def reconcile_zerodha(adopt: bool = False, strategy: str | None = None, data_dir: Path | None = None) -> int:
    """Compare our Zerodha positions with Kite's; print the differences; 1 if any (0 after --adopt)."""
    from connectors.kite import reconcile
    from dataflows.zerodha import kite_client

    settings = _settings(data_dir)
    _require_kite(settings)
    try:
        servers = _servers(settings)
        with kite_client(settings) as client:
            result = reconcile.reconcile(servers.redis, client)
        adopted = (
            reconcile.adopt(
                servers.redis, result, strategy, postgres_url=servers.postgres, now=datetime.now(UTC)
            )
            if adopt and result.differences
            else []
        )
    except AlphaPandaError as err:
        raise _fail(err) from err
    if not result.differences:
        _say("zerodha: our positions match Kite's positions and holdings")
        return 0
    table = Table(title="zerodha: positions that differ (ours = sum of strategy portfolios in Redis)")
    for name in ("token", "symbol", "ours", "kite", "kite - ours", "kite avg price"):
        table.add_column(name, justify="left" if name in ("token", "symbol") else "right")
    for diff in result.differences:
        table.add_row(
            str(diff.instrument_token),
            diff.symbol or "-",
            str(diff.ours),
            str(diff.broker),
            f"{diff.difference:+d}",
            f"{diff.broker_average_price:,.2f}",
        )
    console.print(table)
    for item in adopted:
        _say(f"{item.difference.instrument_token}: {item.note}")
    if adopted and all(a.strategy_id for a in adopted):
        return 0
    return 1


@kite_app.command("reconcile")
def kite_reconcile(
    adopt: Annotated[bool, typer.Option("--adopt", help="Take Kite's figures into our portfolios.")] = False,
    strategy: Annotated[
        str | None, typer.Option(help="With --adopt: the strategy that takes positions no strategy holds.")
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Compare our Zerodha positions with Kite's positions and holdings (exit 1 on a difference)."""
    code = reconcile_zerodha(adopt, strategy, data_dir)
    if code:
        raise typer.Exit(code=code)


def reconcile_command(
    broker: Annotated[str, typer.Option(help="The broker to reconcile (zerodha).")] = "zerodha",
    adopt: Annotated[
        bool, typer.Option("--adopt", help="Take the broker's figures into our portfolios.")
    ] = False,
    strategy: Annotated[
        str | None, typer.Option(help="With --adopt: the strategy that takes positions no strategy holds.")
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Reconcile our positions with a broker's (``--broker zerodha``: Kite positions and holdings)."""
    if broker != "zerodha":
        raise _fail(ValueError(f"reconcile --broker {broker}: only zerodha is reconciled here"))
    kite_reconcile(adopt, strategy, data_dir)


def register(app: typer.Typer) -> None:
    """Add ``halt``, ``resume``, ``kite`` and (unless one exists) ``reconcile`` to ``app``."""
    app.command(name="halt")(halt_command)
    app.command(name="resume")(resume_command)
    app.add_typer(kite_app, name="kite")
    if not any(command.name == "reconcile" for command in app.registered_commands):
        app.command(name="reconcile")(reconcile_command)
