"""PostgreSQL storage of the instrument master and bar history (psycopg 3).

Tables are created by ``connectors/migrations/0100_market_data.sql``.
Each write is one ``INSERT ... SELECT FROM unnest(...) ON CONFLICT DO
UPDATE`` statement per batch, so a batch lands whole or not at all, and
loading the same bars twice leaves one row per (instrument_token, timestamp)
holding the latest values.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Final

import psycopg

from connectors.errors import describe_error, redact_url
from connectors.marketdata.bars import Bar
from connectors.marketdata.errors import HistoryStoreError
from connectors.marketdata.instruments import Instrument, InstrumentResolver

MIGRATION: Final = Path(__file__).resolve().parent.parent / "migrations" / "0100_market_data.sql"
"""The DDL this module's SQL expects (applied by the migration runner)."""

UPSERT_BARS: Final = """
INSERT INTO market_data
    (instrument_token, timestamp, open, high, low, close, volume, symbol, source)
SELECT * FROM unnest(
    %s::bigint[], %s::timestamptz[], %s::float8[], %s::float8[], %s::float8[],
    %s::float8[], %s::bigint[], %s::text[], %s::text[]
)
ON CONFLICT (instrument_token, timestamp) DO UPDATE SET
    open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low,
    close = EXCLUDED.close, volume = EXCLUDED.volume,
    symbol = EXCLUDED.symbol, source = EXCLUDED.source
"""

UPSERT_INSTRUMENTS: Final = """
INSERT INTO instruments
    (instrument_token, exchange_token, tradingsymbol, name, last_price, expiry,
     strike, tick_size, lot_size, instrument_type, segment, exchange)
SELECT * FROM unnest(
    %s::bigint[], %s::bigint[], %s::text[], %s::text[], %s::float8[], %s::date[],
    %s::float8[], %s::float8[], %s::int[], %s::text[], %s::text[], %s::text[]
)
ON CONFLICT (instrument_token) DO UPDATE SET
    exchange_token = EXCLUDED.exchange_token, tradingsymbol = EXCLUDED.tradingsymbol,
    name = EXCLUDED.name, last_price = EXCLUDED.last_price, expiry = EXCLUDED.expiry,
    strike = EXCLUDED.strike, tick_size = EXCLUDED.tick_size, lot_size = EXCLUDED.lot_size,
    instrument_type = EXCLUDED.instrument_type, segment = EXCLUDED.segment,
    exchange = EXCLUDED.exchange, updated_at = now()
"""

SELECT_BARS: Final = """
SELECT instrument_token, timestamp, open, high, low, close, volume, symbol, source
FROM market_data
WHERE (%(tokens)s::bigint[] IS NULL OR instrument_token = ANY(%(tokens)s::bigint[]))
  AND (%(start)s::timestamptz IS NULL OR timestamp >= %(start)s::timestamptz)
  AND (%(end)s::timestamptz IS NULL OR timestamp < %(end)s::timestamptz)
ORDER BY timestamp, instrument_token
"""


def _last_per_key(bars: Iterable[Bar]) -> list[Bar]:
    # ON CONFLICT DO UPDATE may not touch one row twice in a statement, so a
    # batch keeps only the last bar of each (token, timestamp).
    latest: dict[tuple[int, datetime], Bar] = {}
    for bar in bars:
        latest[(bar.instrument_token, bar.timestamp)] = bar
    return list(latest.values())


def upsert_bars(conn: psycopg.Connection, bars: Iterable[Bar]) -> int:
    """Insert or update ``bars`` in one statement and commit; return the batch size."""
    batch = _last_per_key(bars)
    if not batch:
        return 0
    columns: Sequence[list[object]] = [
        [b.instrument_token for b in batch],
        [b.timestamp for b in batch],
        [b.open for b in batch],
        [b.high for b in batch],
        [b.low for b in batch],
        [b.close for b in batch],
        [b.volume for b in batch],
        [b.symbol for b in batch],
        [b.source for b in batch],
    ]
    with conn.transaction():
        conn.execute(UPSERT_BARS, columns)
    return len(batch)


def upsert_instruments(conn: psycopg.Connection, instruments: Iterable[Instrument]) -> int:
    """Insert or update instrument rows in one statement and commit; return the count."""
    batch = list({i.instrument_token: i for i in instruments}.values())
    if not batch:
        return 0
    columns: Sequence[list[object]] = [
        [i.instrument_token for i in batch],
        [i.exchange_token for i in batch],
        [i.tradingsymbol for i in batch],
        [i.name for i in batch],
        [i.last_price for i in batch],
        [i.expiry for i in batch],
        [i.strike for i in batch],
        [i.tick_size for i in batch],
        [i.lot_size for i in batch],
        [i.instrument_type for i in batch],
        [i.segment for i in batch],
        [i.exchange for i in batch],
    ]
    with conn.transaction():
        conn.execute(UPSERT_INSTRUMENTS, columns)
    return len(batch)


def read_bars(
    conn: psycopg.Connection,
    *,
    tokens: Sequence[int] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> Iterator[Bar]:
    """Yield stored bars in (timestamp, token) order, optionally filtered.

    ``start``: inclusive lower bound on the bar start; ``end`` exclusive.
    """
    params = {"tokens": list(tokens) if tokens is not None else None, "start": start, "end": end}
    # A server-side cursor streams long histories instead of loading them whole.
    with conn.transaction(), conn.cursor(name="read_market_data") as cur:
        cur.execute(SELECT_BARS, params)
        for token, stamp, open_, high, low, close, volume, symbol, source in cur:
            yield Bar(
                instrument_token=token,
                timestamp=stamp,
                open=open_,
                high=high,
                low=low,
                close=close,
                volume=volume,
                symbol=symbol,
                source=source,
            )


COUNT_BARS: Final = """
SELECT count(*)
FROM market_data
WHERE (%(tokens)s::bigint[] IS NULL OR instrument_token = ANY(%(tokens)s::bigint[]))
  AND (%(start)s::timestamptz IS NULL OR timestamp >= %(start)s::timestamptz)
  AND (%(end)s::timestamptz IS NULL OR timestamp < %(end)s::timestamptz)
"""


def count_bars(
    conn: psycopg.Connection,
    *,
    tokens: Sequence[int] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> int:
    """Return how many bars :func:`read_bars` would yield for the same filters."""
    params = {"tokens": list(tokens) if tokens is not None else None, "start": start, "end": end}
    row = conn.execute(COUNT_BARS, params).fetchone()
    return int(row[0]) if row else 0


def stored_bars(
    url: str,
    *,
    tokens: Sequence[int] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> Iterator[Bar]:
    """Yield the bars of :func:`read_bars` from the database at ``url``, on a connection of its own.

    The connection opens on the first ``next()`` and closes when the
    iterator is exhausted or closed (``close()``), so a Bytewax source can
    hold it for the length of a replay.

    Raises:
        HistoryStoreError: Postgres is unreachable or the query failed
            (the URL's password is never shown).
    """
    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            yield from read_bars(conn, tokens=tokens, start=start, end=end)
    except psycopg.Error as err:
        msg = f"read market_data from {redact_url(url)}: {type(err).__name__}: {describe_error(err, url)}"
        raise HistoryStoreError(msg) from err


_INSTRUMENT_COLUMNS: Final = (
    "instrument_token, exchange_token, tradingsymbol, name, last_price, expiry,"
    " strike, tick_size, lot_size, instrument_type, segment, exchange"
)


def lookup_instruments(conn: psycopg.Connection, names: Iterable[str]) -> list[Instrument]:
    """Return the stored instruments called ``EXCHANGE:SYMBOL`` in ``names`` (case-insensitive).

    Only the named rows are read (the master holds ~100k), through the
    ``(exchange, tradingsymbol)`` index. Names without a ``:`` and unknown
    names are simply absent from the result; build an
    :class:`~connectors.marketdata.instruments.InstrumentResolver` over it
    to get errors that name them.
    """
    pairs = [name.strip().upper().split(":", 1) for name in names if ":" in name]
    if not pairs:
        return []
    rows = conn.execute(
        f"SELECT {_INSTRUMENT_COLUMNS} FROM instruments"  # noqa: S608 - constant column list
        " WHERE (exchange, tradingsymbol) IN (SELECT * FROM unnest(%s::text[], %s::text[]))"
        " ORDER BY instrument_token",
        [[p[0] for p in pairs], [p[1] for p in pairs]],
    ).fetchall()
    return [Instrument(*row) for row in rows]


def load_instruments(conn: psycopg.Connection) -> list[Instrument]:
    """Return every stored instrument, ordered by token."""
    rows = conn.execute(
        f"SELECT {_INSTRUMENT_COLUMNS} FROM instruments ORDER BY instrument_token"  # noqa: S608 - constant
    ).fetchall()
    return [Instrument(*row) for row in rows]


def resolve_tokens(names: tuple[int | str, ...], postgres_url: str) -> tuple[tuple[int, ...], dict[int, str]]:
    """Return ``FEED_TOKENS`` as tokens, and token -> ``EXCHANGE:SYMBOL`` for the named ones.

    Names are looked up in the ``instruments`` table at ``postgres_url``.

    Raises:
        InstrumentError: a name is unknown or not ``EXCHANGE:SYMBOL``.
        HistoryStoreError: the table cannot be read.
    """
    wanted = [n for n in names if isinstance(n, str)]
    if not wanted:
        return tuple(int(n) for n in names), {}
    try:
        with psycopg.connect(postgres_url, connect_timeout=5) as conn:
            resolver = InstrumentResolver(lookup_instruments(conn, wanted))
    except psycopg.Error as err:
        where = redact_url(postgres_url)
        msg = f"market feed: cannot read instruments from {where}: {describe_error(err, postgres_url)}"
        raise HistoryStoreError(msg) from err
    tokens = tuple(resolver.resolve(n) if isinstance(n, str) else n for n in names)
    symbols = {resolver.resolve(n): resolver.instrument(n).key for n in wanted}
    return tokens, symbols
