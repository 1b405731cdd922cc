-- Positions taken from a broker's own figures (`alpha-panda reconcile --broker
-- zerodha --adopt`). Each row says: from adopted_at on, this account holds
-- `quantity` of the instrument at `average_price` (cash, fees and realized
-- P&L unchanged). `alpha-panda reconcile` rebuilds every account from its
-- fills and these rows in time order, so an adopted position is not
-- reported as a difference again.
CREATE TABLE IF NOT EXISTS position_adjustments (
    id                BIGSERIAL PRIMARY KEY,
    broker            TEXT NOT NULL,
    strategy_id       TEXT NOT NULL,
    instrument_token  BIGINT NOT NULL,
    quantity          INTEGER NOT NULL,
    average_price     NUMERIC(20, 6) NOT NULL,
    previous_quantity INTEGER NOT NULL,
    adopted_at        TIMESTAMPTZ NOT NULL,
    reason            TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS position_adjustments_account
    ON position_adjustments (broker, strategy_id, adopted_at);
