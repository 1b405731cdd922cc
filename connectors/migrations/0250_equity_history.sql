-- Equity history: every P&L snapshot the live flows publish, so the dashboard
-- can draw an account's equity over event time across restarts. One row per
-- snapshot event (its deterministic envelope id), so a redelivered snapshot
-- adds no row. Money in account currency.

CREATE TABLE IF NOT EXISTS equity_history (
    broker          text             NOT NULL,
    strategy_id     text             NOT NULL,
    event_id        text             NOT NULL,
    snapshot_ts     timestamptz      NOT NULL,
    cash            double precision NOT NULL,
    realized_pnl    double precision NOT NULL,
    unrealized_pnl  double precision NOT NULL,
    total_pnl       double precision NOT NULL,
    fees_paid       double precision NOT NULL,
    total_value     double precision NOT NULL,
    recorded_at     timestamptz      NOT NULL DEFAULT now(),
    CONSTRAINT equity_history_broker_event_key UNIQUE (broker, event_id)
);
CREATE INDEX IF NOT EXISTS equity_history_account_ts_idx
    ON equity_history (broker, strategy_id, snapshot_ts);
