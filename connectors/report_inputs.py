"""What a report reads: a replay's output directory, or the Postgres ledger.

A replay directory holds ``<broker>.pnl.snapshots.jsonl`` and
``<broker>.orders.filled.jsonl`` (one envelope per line) and
``portfolio.json`` (``{broker: {strategy_id: snapshot}}``, every active
account, fresh ones included). The ledger holds the ``fills`` table.
Both come out as typed events (:mod:`schemas.events`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import msgspec
import orjson
import psycopg

from connectors.errors import ConnectorError, PostgresConnectorError, redact_url
from schemas.codec import decode_as
from schemas.envelope import FilledEnvelope, PnlEnvelope
from schemas.errors import DecodeError
from schemas.events import OrderFilled, PnlSnapshot
from schemas.topics import ORDERS_FILLED, PNL_SNAPSHOTS

PORTFOLIO_FILE: Final = "portfolio.json"
CONNECT_TIMEOUT_S: Final = 5


class ReportInputError(ConnectorError):
    """A report's input is missing or unreadable (names the file or source)."""


@dataclass
class ReportInputs:
    """Snapshots and fills in stream order, and every account the source knows.

    ``accounts`` maps (broker, strategy_id) to the account's final snapshot
    from ``portfolio.json`` (``None`` when the source has no such file).
    """

    snapshots: list[PnlSnapshot] = field(default_factory=list)
    fills: list[OrderFilled] = field(default_factory=list)
    accounts: dict[tuple[str, str], PnlSnapshot | None] = field(default_factory=dict)


def _topic_files(directory: Path, stage: str) -> list[tuple[str, Path]]:
    suffix = f".{stage}.jsonl"
    return [(p.name[: -len(".jsonl")], p) for p in sorted(directory.glob(f"*{suffix}"))]


def _read_events(path: Path, topic: str, expected: type[PnlEnvelope] | type[FilledEnvelope]) -> list[Any]:
    events: list[Any] = []
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                events.append(decode_as(line, topic, expected).data)
            except DecodeError as err:
                msg = f"report: {path} line {number}: {err.reason}"
                raise ReportInputError(msg) from err
    return events


def _read_portfolio(path: Path) -> dict[tuple[str, str], PnlSnapshot | None]:
    try:
        brokers = orjson.loads(path.read_bytes())
        return {
            (broker, strategy_id): msgspec.convert(snapshot, PnlSnapshot, strict=False)
            for broker, accounts in brokers.items()
            for strategy_id, snapshot in accounts.items()
        }
    except (orjson.JSONDecodeError, msgspec.ValidationError, AttributeError) as err:
        msg = f"report: {path} is not a replay portfolio file: {err}"
        raise ReportInputError(msg) from err


def read_replay_dir(directory: Path) -> ReportInputs:
    """Read a replay output directory.

    Raises:
        ReportInputError: ``directory`` does not exist, holds none of the
            files above, or a line does not decode (the message names the file
            and line).
    """
    if not directory.is_dir():
        msg = f"report: {directory} is not a directory"
        raise ReportInputError(msg)
    snapshot_files = _topic_files(directory, PNL_SNAPSHOTS)
    fill_files = _topic_files(directory, ORDERS_FILLED)
    portfolio = directory / PORTFOLIO_FILE
    if not (snapshot_files or fill_files or portfolio.is_file()):
        msg = (
            f"report: {directory} holds no replay outputs (no *.{PNL_SNAPSHOTS}.jsonl, "
            f"*.{ORDERS_FILLED}.jsonl or {PORTFOLIO_FILE}); run `alpha-panda replay --out {directory}` first"
        )
        raise ReportInputError(msg)
    inputs = ReportInputs()
    if portfolio.is_file():
        inputs.accounts.update(_read_portfolio(portfolio))
    for topic, path in snapshot_files:
        inputs.snapshots.extend(_read_events(path, topic, PnlEnvelope))
    for topic, path in fill_files:
        inputs.fills.extend(_read_events(path, topic, FilledEnvelope))
    for snapshot in inputs.snapshots:
        inputs.accounts.setdefault((snapshot.broker, snapshot.strategy_id), None)
    for fill in inputs.fills:
        inputs.accounts.setdefault((fill.broker, fill.strategy_id), None)
    return inputs


_FILLS_QUERY: Final = (
    "SELECT broker, order_id, strategy_id, instrument_token, side, quantity, fill_price, fees,"
    " execution_mode, filled_at FROM fills"
    " WHERE %(until)s::timestamptz IS NULL OR filled_at <= %(until)s"
    " ORDER BY filled_at, broker, order_id"
)


def read_ledger_fills(url: str, until: datetime | None = None) -> list[OrderFilled]:
    """Return every fill of the ledger up to ``until`` (inclusive; all when ``None``), by time.

    Earlier fills are included because an account's positions and cash at
    the start of a report window depend on them.

    Raises:
        PostgresConnectorError: Postgres is unreachable or the query
            failed (the URL appears only redacted).
    """
    try:
        with psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_S) as conn:
            rows = conn.execute(_FILLS_QUERY, {"until": until}).fetchall()
    except psycopg.Error as err:
        msg = f"report: cannot read the ledger at {redact_url(url)}: {type(err).__name__}: {err}"
        raise PostgresConnectorError(msg) from err
    return [
        OrderFilled(
            order_id=order_id,
            strategy_id=strategy_id,
            instrument_token=token,
            side=side,
            quantity=quantity,
            timestamp=filled_at,
            broker=broker,
            execution_mode=mode,
            fill_price=price,
            fees=fees,
        )
        for (broker, order_id, strategy_id, token, side, quantity, price, fees, mode, filled_at) in rows
    ]
