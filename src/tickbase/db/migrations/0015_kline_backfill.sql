-- tickbase schema, version 15: K-lines backfilled from the REST API.
-- The real-time pipeline aggregates bars from the live trade stream; when the
-- stream misses trades (skipped aggregate ids, a reconnect) the affected bars
-- are fetched again from Binance's REST klines once final and stored marked
-- backfilled. Such a bar is the exchange's own and complete: a later live
-- write of the same bar (from the incomplete trades) never replaces it.
ALTER TABLE tickbase.klines ADD COLUMN backfilled boolean NOT NULL DEFAULT false;
