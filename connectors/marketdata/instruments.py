"""Instrument master: Kite's instruments CSV as typed rows, names -> tokens.

Kite's ``/instruments`` dump is a CSV with the header ``instrument_token,
exchange_token,tradingsymbol,name,last_price,expiry,strike,tick_size,
lot_size,instrument_type,segment,exchange``; ``expiry`` is ``YYYY-MM-DD`` or
empty, prices are in rupees. :class:`InstrumentResolver` maps
``EXCHANGE:SYMBOL`` (e.g. ``NSE:INFY``) to the instrument token, and
:func:`resolve_instruments` applies it to strategy configuration rows
before they reach the operators (which take integer tokens only).

Providers without tokens (Alpaca, Yahoo) use :func:`stable_token`.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Final

from pydantic import SecretStr

from connectors.marketdata.errors import FeedAuthenticationError, HttpStatusError, InstrumentError
from connectors.marketdata.http_client import HTTP_OK, http_get

KITE_COLUMNS: Final = (
    "instrument_token",
    "exchange_token",
    "tradingsymbol",
    "name",
    "last_price",
    "expiry",
    "strike",
    "tick_size",
    "lot_size",
    "instrument_type",
    "segment",
    "exchange",
)

STABLE_TOKEN_BASE: Final = 1 << 48
"""Tokens from :func:`stable_token` lie in [2**48, 2**49): above every Kite
token (uint32), below 2**53 so they survive JSON doubles."""


def stable_token(symbol: str) -> int:
    """Return a deterministic instrument token for a provider symbol such as ``AAPL``.

    The token is ``2**48 + the first 6 bytes of SHA-256("symbol:" + SYMBOL)``
    (upper-cased), so it is the same in every process and release, never
    collides with a Kite token, and two of 10,000 symbols collide with
    probability about 2e-7.
    """
    digest = hashlib.sha256(f"symbol:{symbol.strip().upper()}".encode()).digest()
    return STABLE_TOKEN_BASE + int.from_bytes(digest[:6], "big")


@dataclass(frozen=True, slots=True)
class Instrument:
    """One row of the instrument master (prices in rupees, lot size in units)."""

    instrument_token: int
    exchange_token: int
    tradingsymbol: str
    name: str
    last_price: float
    expiry: date | None
    strike: float
    tick_size: float
    lot_size: int
    instrument_type: str
    segment: str
    exchange: str

    @property
    def key(self) -> str:
        """``EXCHANGE:TRADINGSYMBOL``, the name :class:`InstrumentResolver` resolves."""
        return f"{self.exchange}:{self.tradingsymbol}"


def _field(row: dict[str, str], name: str, line: int) -> str:
    value = row.get(name)
    if value is None:
        msg = f"parse instruments: line {line} has no {name!r} column"
        raise InstrumentError(msg)
    return value.strip()


def _number(row: dict[str, str], name: str, line: int, kind: type[int] | type[float]) -> float:
    text = _field(row, name, line)
    try:
        return kind(text) if text else kind(0)
    except ValueError as err:
        msg = f"parse instruments: line {line}: {name} must be {kind.__name__}, got {text!r}"
        raise InstrumentError(msg) from err


def _row(row: dict[str, str], line: int) -> Instrument:
    expiry_text = _field(row, "expiry", line)
    try:
        expiry = date.fromisoformat(expiry_text) if expiry_text else None
    except ValueError as err:
        msg = f"parse instruments: line {line}: expiry must be YYYY-MM-DD, got {expiry_text!r}"
        raise InstrumentError(msg) from err
    token = int(_number(row, "instrument_token", line, int))
    if token <= 0:
        msg = f"parse instruments: line {line}: instrument_token must be > 0, got {token}"
        raise InstrumentError(msg)
    return Instrument(
        instrument_token=token,
        exchange_token=int(_number(row, "exchange_token", line, int)),
        tradingsymbol=_field(row, "tradingsymbol", line),
        name=_field(row, "name", line),
        last_price=_number(row, "last_price", line, float),
        expiry=expiry,
        strike=_number(row, "strike", line, float),
        tick_size=_number(row, "tick_size", line, float),
        lot_size=int(_number(row, "lot_size", line, int)),
        instrument_type=_field(row, "instrument_type", line),
        segment=_field(row, "segment", line),
        exchange=_field(row, "exchange", line),
    )


def parse_kite_instruments(text: str) -> Iterator[Instrument]:
    """Yield the instruments of a Kite instruments CSV (header line required).

    Raises:
        InstrumentError: a missing column or a malformed value; the
            message names the line (1 = header) and the field.
    """
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in KITE_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        msg = f"parse instruments: header lacks column(s) {missing}"
        raise InstrumentError(msg)
    for index, row in enumerate(reader, start=2):
        yield _row(row, index)


class InstrumentResolver:
    """Resolves ``EXCHANGE:SYMBOL`` names (case-insensitive) to instrument tokens."""

    def __init__(self, instruments: Iterable[Instrument]) -> None:
        self._by_key: dict[str, Instrument] = {}
        self._by_token: dict[int, Instrument] = {}
        for instrument in instruments:
            self._by_key[instrument.key.upper()] = instrument
            self._by_token[instrument.instrument_token] = instrument

    def __len__(self) -> int:
        return len(self._by_token)

    def instrument(self, name: str) -> Instrument:
        """Return the instrument called ``name`` (``NSE:INFY``).

        Raises:
            InstrumentError: ``name`` has no ``EXCHANGE:`` prefix or is unknown.
        """
        if ":" not in name:
            msg = f"resolve instrument: {name!r} is not EXCHANGE:SYMBOL (e.g. 'NSE:INFY')"
            raise InstrumentError(msg)
        found = self._by_key.get(name.strip().upper())
        if found is None:
            msg = f"resolve instrument: no instrument {name!r} among {len(self)} known"
            raise InstrumentError(msg)
        return found

    def resolve(self, name: str) -> int:
        """Return the token of ``name``; see :meth:`instrument`."""
        return self.instrument(name).instrument_token

    def symbols(self) -> dict[int, str]:
        """Return token -> ``EXCHANGE:SYMBOL`` for every instrument (tick ``symbol``)."""
        return {token: inst.key for token, inst in self._by_token.items()}


def instrument_names(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """Return the ``EXCHANGE:SYMBOL`` names the rows' ``instruments`` lists mention, in order.

    Integers and digit strings are tokens already and are not returned.
    """
    names: dict[str, None] = {}
    for row in rows:
        instruments = row.get("instruments")
        if isinstance(instruments, list | tuple):
            for item in instruments:
                if isinstance(item, str) and not item.strip().isdigit():
                    names[item.strip()] = None
    return list(names)


def resolve_instruments(
    rows: Sequence[Mapping[str, Any]], resolver: InstrumentResolver
) -> list[dict[str, Any]]:
    """Return copies of strategy rows whose ``instruments`` hold tokens only.

    In: rows as read from YAML or Postgres, ``instruments`` a list of
    integer tokens and/or ``EXCHANGE:SYMBOL`` names (``NSE:INFY``); a digit
    string counts as a token. Out: the same rows with every name replaced
    by its token, order kept; other fields and non-list values are left
    as they are (the strategy validator reports those). Pure: the resolver
    holds the instruments (see :func:`connectors.marketdata.store.lookup_instruments`).

    Raises:
        InstrumentError: a name is unknown or not ``EXCHANGE:SYMBOL``;
            the message names the strategy id.
    """
    resolved = []
    for row in rows:
        out = dict(row)
        instruments = row.get("instruments")
        if isinstance(instruments, list | tuple):
            tokens: list[Any] = []
            for item in instruments:
                if not isinstance(item, str):
                    tokens.append(item)
                elif item.strip().isdigit():
                    tokens.append(int(item.strip()))
                else:
                    try:
                        tokens.append(resolver.resolve(item))
                    except InstrumentError as err:
                        msg = f"strategy {row.get('id')!r}: {err}"
                        raise InstrumentError(msg) from err
            out["instruments"] = tokens
        resolved.append(out)
    return resolved


KITE_API_URL: Final = "https://api.kite.trade"
HTTP_FORBIDDEN: Final = 403


def fetch_kite_instruments(
    api_key: SecretStr,
    access_token: SecretStr,
    *,
    base_url: str = KITE_API_URL,
    exchange: str | None = None,
    timeout_s: float = 60.0,
) -> list[Instrument]:
    """Download and parse Kite's instrument master (all, or one ``exchange``'s).

    Raises:
        FeedAuthenticationError: Kite refused the credentials (HTTP 403).
        HttpStatusError: any other non-200 answer.
        InstrumentError: the CSV is malformed.
    """
    step = "fetch kite instruments"
    url = f"{base_url.rstrip('/')}/instruments" + (f"/{exchange}" if exchange else "")
    authorization = f"token {api_key.get_secret_value()}:{access_token.get_secret_value()}"
    response = http_get(
        url,
        headers={"X-Kite-Version": "3", "Authorization": authorization},
        timeout_s=timeout_s,
    )
    if response.status == HTTP_FORBIDDEN:
        msg = f"{step}: {base_url} refused the credentials (HTTP 403)"
        raise FeedAuthenticationError(msg)
    if response.status != HTTP_OK:
        raise HttpStatusError(step, response.status, response.text())
    body = response.body
    if body[:2] == b"\x1f\x8b":
        body = gzip.decompress(body)
    return list(parse_kite_instruments(body.decode("utf-8")))
