-- Strategy configuration and the order/fill ledger (DESIGN.md, Stores).

CREATE TABLE IF NOT EXISTS strategy_configurations (
    id                      text        PRIMARY KEY,
    strategy_type           text        NOT NULL,
    instruments             bigint[]    NOT NULL DEFAULT '{}',
    parameters              jsonb       NOT NULL DEFAULT '{}'::jsonb,
    is_active               boolean     NOT NULL DEFAULT true,
    zerodha_trading_enabled boolean     NOT NULL DEFAULT false,
    updated_at              timestamptz NOT NULL DEFAULT now()
);

-- One row per order and broker. A terminal event (filled, failed) moves the
-- status on; replays never add a row or move a terminal status back.
CREATE TABLE IF NOT EXISTS orders (
    broker           text             NOT NULL,
    order_id         text             NOT NULL,
    strategy_id      text             NOT NULL,
    instrument_token bigint           NOT NULL,
    side             text             NOT NULL CHECK (side IN ('BUY', 'SELL')),
    quantity         bigint           NOT NULL CHECK (quantity > 0),
    price            double precision,
    status           text             NOT NULL,
    is_terminal      boolean          NOT NULL,
    execution_mode   text             NOT NULL,
    error_message    text,
    event_id         text             NOT NULL,
    order_ts         timestamptz      NOT NULL,
    recorded_at      timestamptz      NOT NULL DEFAULT now(),
    updated_at       timestamptz      NOT NULL DEFAULT now(),
    CONSTRAINT orders_broker_order_id_key UNIQUE (broker, order_id)
);
CREATE INDEX IF NOT EXISTS orders_strategy_idx ON orders (broker, strategy_id);

-- One row per executed order and broker; money in account currency.
CREATE TABLE IF NOT EXISTS fills (
    broker           text             NOT NULL,
    order_id         text             NOT NULL,
    strategy_id      text             NOT NULL,
    instrument_token bigint           NOT NULL,
    side             text             NOT NULL CHECK (side IN ('BUY', 'SELL')),
    quantity         bigint           NOT NULL CHECK (quantity > 0),
    fill_price       double precision NOT NULL,
    fees             double precision NOT NULL,
    execution_mode   text             NOT NULL,
    event_id         text             NOT NULL,
    filled_at        timestamptz      NOT NULL,
    recorded_at      timestamptz      NOT NULL DEFAULT now(),
    CONSTRAINT fills_broker_order_id_key UNIQUE (broker, order_id)
);
CREATE INDEX IF NOT EXISTS fills_strategy_idx ON fills (broker, strategy_id);

-- Any change to a configuration row moves updated_at, so an operator's
-- hand-written UPDATE is visible to readers that compare timestamps.
CREATE OR REPLACE FUNCTION strategy_configurations_touch() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;

DROP TRIGGER IF EXISTS strategy_configurations_touch ON strategy_configurations;
CREATE TRIGGER strategy_configurations_touch
    BEFORE UPDATE ON strategy_configurations
    FOR EACH ROW EXECUTE FUNCTION strategy_configurations_touch();
