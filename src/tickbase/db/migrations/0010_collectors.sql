-- tickbase schema, version 10: what the collectors store beside K-lines —
-- forward-filled bars, non-price observations, and the integrity of each
-- collected series (with the alert rule that watches it).

-- A bar that was not traded: forward-filled from the previous close to stand
-- in for a missing one (prices are forward-filled; see marketdata/cleaning.py).
ALTER TABLE tickbase.klines ADD COLUMN is_filled boolean NOT NULL DEFAULT false;

-- One value of a non-price series at a time: sentiment (fear-and-greed),
-- macro (a FRED series), on-chain (a Glassnode metric). is_filled marks a value
-- the cleaning rules supplied (carried, interpolated or the default), not the
-- source. A series has one history whichever source served it.
CREATE TABLE tickbase.observations (
    series       text             NOT NULL,
    observed_at  timestamptz      NOT NULL,
    kind         text             NOT NULL,
    source       text             NOT NULL,
    value        double precision NOT NULL,
    label        text,
    is_filled    boolean          NOT NULL DEFAULT false,
    ingested_at  timestamptz      NOT NULL DEFAULT now(),
    CONSTRAINT observations_pkey PRIMARY KEY (series, observed_at),
    CONSTRAINT observations_kind_valid CHECK (kind IN ('sentiment', 'macro', 'onchain')),
    CONSTRAINT observations_value_finite CHECK (value > '-Infinity' AND value < 'Infinity'),
    CONSTRAINT observations_series_valid CHECK (series ~ '^[A-Za-z0-9_.:/-]{1,80}$')
);

-- The last integrity check of each collected K-line series: how many of the
-- bars its window should hold are stored (traded, not filled).
CREATE TABLE tickbase.series_integrity (
    symbol        text             NOT NULL,
    interval      text             NOT NULL,
    window_start  timestamptz      NOT NULL,
    window_end    timestamptz      NOT NULL,
    expected      integer          NOT NULL,
    present       integer          NOT NULL,
    completeness  double precision NOT NULL,
    missing       jsonb            NOT NULL DEFAULT '[]'::jsonb,
    checked_at    timestamptz      NOT NULL DEFAULT now(),
    CONSTRAINT series_integrity_pkey PRIMARY KEY (symbol, interval),
    CONSTRAINT series_integrity_counts_valid CHECK (
        expected >= 0 AND present >= 0 AND completeness >= 0 AND completeness <= 100)
);

-- The rule: a series below 95% complete fires (one alert per series).
ALTER TABLE tickbase.alert_rules DROP CONSTRAINT alert_rules_kind_valid;
ALTER TABLE tickbase.alert_rules ADD CONSTRAINT alert_rules_kind_valid CHECK (
    kind IN ('failures_last_hour', 'backlog', 'node_down', 'leader_missing', 'schedule_lag',
             'data_completeness'));
INSERT INTO tickbase.alert_rules (name, kind, threshold, for_seconds, description) VALUES
    ('data-completeness', 'data_completeness', 95, 0,
     'A collected K-line series holds less than 95% of the bars of its integrity window');
