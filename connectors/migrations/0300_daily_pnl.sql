-- The day's closing P&L per account (broker, strategy), written by
-- `alpha-panda pnl close-day` from the latest snapshot in Redis. One row per
-- trading date and account; re-running the day replaces it.
CREATE TABLE IF NOT EXISTS daily_pnl (
    trading_date   DATE NOT NULL,
    broker         TEXT NOT NULL,
    strategy_id    TEXT NOT NULL,
    cash           DOUBLE PRECISION NOT NULL,
    realized_pnl   DOUBLE PRECISION NOT NULL,
    unrealized_pnl DOUBLE PRECISION NOT NULL,
    total_pnl      DOUBLE PRECISION NOT NULL,
    fees_paid      DOUBLE PRECISION NOT NULL,
    total_value    DOUBLE PRECISION NOT NULL,
    positions      JSONB NOT NULL,
    snapshot_ts    TIMESTAMPTZ NOT NULL,
    recorded_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (trading_date, broker, strategy_id)
);
