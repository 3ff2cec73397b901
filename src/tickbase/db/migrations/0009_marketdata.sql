-- tickbase schema, version 9: market data — K-lines, the read-through cache,
-- and the saved state of the incremental indicators.

-- One row per bar, keyed by where it came from: the same bar from two sources
-- is two rows (a fallback source never overwrites the primary's history).
-- Binance's kline fields; the optional ones are NULL for sources without them.
CREATE TABLE tickbase.klines (
    source                  text             NOT NULL,
    symbol                  text             NOT NULL,
    interval                text             NOT NULL,
    open_time               timestamptz      NOT NULL,
    open                    double precision NOT NULL,
    high                    double precision NOT NULL,
    low                     double precision NOT NULL,
    close                   double precision NOT NULL,
    volume                  double precision NOT NULL,
    close_time              timestamptz,
    quote_volume            double precision,
    trade_count             bigint,
    taker_buy_base_volume   double precision,
    taker_buy_quote_volume  double precision,
    -- a close more than 20% from the previous close: kept, flagged, logged
    is_anomaly              boolean          NOT NULL DEFAULT false,
    ingested_at             timestamptz      NOT NULL DEFAULT now(),
    CONSTRAINT klines_pkey PRIMARY KEY (source, symbol, interval, open_time),
    CONSTRAINT klines_prices_valid CHECK (
        open > 0 AND high > 0 AND low > 0 AND close > 0
        AND high >= greatest(open, close) AND low <= least(open, close)
        AND high < 'Infinity' AND volume >= 0 AND volume < 'Infinity'),
    CONSTRAINT klines_symbol_valid CHECK (symbol ~ '^[A-Za-z0-9_.:/-]{1,40}$'),
    CONSTRAINT klines_interval_valid CHECK (interval ~ '^[0-9]{1,3}[smhdwM]$')
);
-- Reads are "the latest N bars of one series": the primary key serves them
-- backwards; this one serves "the latest bar of a symbol whatever the source".
CREATE INDEX klines_series_idx ON tickbase.klines (symbol, interval, open_time DESC);

-- TimescaleDB, where it is installed, turns klines into a hypertable; plain
-- PostgreSQL keeps a plain table (everything else works the same).
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb') THEN
        BEGIN
            CREATE EXTENSION IF NOT EXISTS timescaledb;
            PERFORM create_hypertable('tickbase.klines', 'open_time',
                                      chunk_time_interval => interval '30 days',
                                      migrate_data => true);
        EXCEPTION WHEN OTHERS THEN
            RAISE NOTICE 'timescaledb present but not usable (%): klines stays a plain table',
                SQLERRM;
        END;
    END IF;
END;
$$;

-- Write-through cache with a TTL per key. UNLOGGED: a cache needs no crash
-- safety (a miss reads the tables and refills), and skipping the WAL makes
-- its writes cheap.
CREATE UNLOGGED TABLE tickbase.market_cache (
    key         text        NOT NULL,
    value       jsonb       NOT NULL,
    expires_at  timestamptz NOT NULL,
    stale       boolean     NOT NULL DEFAULT false,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT market_cache_pkey PRIMARY KEY (key)
);

-- The incremental indicators' state after the last bar they saw, per series:
-- a restart continues from here in O(1) instead of recomputing the history.
CREATE TABLE tickbase.indicator_state (
    source          text        NOT NULL,
    symbol          text        NOT NULL,
    interval        text        NOT NULL,
    last_open_time  timestamptz NOT NULL,
    state           jsonb       NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT indicator_state_pkey PRIMARY KEY (source, symbol, interval)
);
