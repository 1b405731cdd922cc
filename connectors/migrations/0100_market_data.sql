-- Market data: the instrument master and OHLCV bar history.
-- Prices in the instrument's quote currency; timestamps are bar starts, UTC.

CREATE TABLE IF NOT EXISTS instruments (
    instrument_token BIGINT PRIMARY KEY,
    exchange_token   BIGINT NOT NULL,
    tradingsymbol    TEXT NOT NULL,
    name             TEXT NOT NULL DEFAULT '',
    last_price       DOUBLE PRECISION NOT NULL DEFAULT 0,
    expiry           DATE,
    strike           DOUBLE PRECISION NOT NULL DEFAULT 0,
    tick_size        DOUBLE PRECISION NOT NULL DEFAULT 0,
    lot_size         INTEGER NOT NULL DEFAULT 1,
    instrument_type  TEXT NOT NULL DEFAULT '',
    segment          TEXT NOT NULL DEFAULT '',
    exchange         TEXT NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS instruments_exchange_symbol_idx
    ON instruments (exchange, tradingsymbol);

CREATE TABLE IF NOT EXISTS market_data (
    instrument_token BIGINT NOT NULL,
    timestamp        TIMESTAMPTZ NOT NULL,
    open             DOUBLE PRECISION NOT NULL CHECK (open > 0),
    high             DOUBLE PRECISION NOT NULL CHECK (high > 0),
    low              DOUBLE PRECISION NOT NULL CHECK (low > 0),
    close            DOUBLE PRECISION NOT NULL CHECK (close > 0),
    volume           BIGINT NOT NULL DEFAULT 0 CHECK (volume >= 0),
    symbol           TEXT,
    source           TEXT NOT NULL DEFAULT '',
    UNIQUE (instrument_token, timestamp)
);

CREATE INDEX IF NOT EXISTS market_data_timestamp_idx ON market_data (timestamp);
