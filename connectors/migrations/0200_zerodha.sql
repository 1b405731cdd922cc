-- Zerodha live execution: the kill switch and our record of every live order.

-- One row per halted scope: broker and strategy_id, '*' meaning any.
-- `alpha-panda halt` inserts, `alpha-panda resume` deletes; Redis mirrors it.
CREATE TABLE IF NOT EXISTS trading_halts (
    scope       text        PRIMARY KEY,
    broker      text        NOT NULL,
    strategy_id text        NOT NULL,
    reason      text        NOT NULL DEFAULT '',
    halted_by   text        NOT NULL DEFAULT '',
    halted_at   timestamptz NOT NULL DEFAULT now()
);

-- Every live order we meant to place, written before it goes to Kite.
-- `tag` is what Kite carries back (<= 20 characters, derived from order_id);
-- order updates map a Kite order to our order through it.
CREATE TABLE IF NOT EXISTS zerodha_orders (
    tag              text        PRIMARY KEY,
    order_id         text        NOT NULL UNIQUE,
    kite_order_id    text,
    strategy_id      text        NOT NULL,
    instrument_token bigint      NOT NULL,
    exchange         text        NOT NULL,
    tradingsymbol    text        NOT NULL,
    side             text        NOT NULL CHECK (side IN ('BUY', 'SELL')),
    quantity         bigint      NOT NULL CHECK (quantity > 0),
    product          text        NOT NULL,
    order_type       text        NOT NULL,
    price            double precision,
    trading_day      date        NOT NULL,
    placed_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS zerodha_orders_day_idx ON zerodha_orders (trading_day);
CREATE INDEX IF NOT EXISTS zerodha_orders_kite_idx ON zerodha_orders (kite_order_id);
