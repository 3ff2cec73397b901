-- Named statements of the market-data block.

-- klines_upsert --
-- A batch of bars of one series in one statement (arrays, one round trip);
-- a bar already stored is updated (a source may revise the last, open bar).
INSERT INTO tickbase.klines AS k (source, symbol, interval, open_time, open, high, low, close,
                                  volume, is_anomaly)
SELECT %(source)s, %(symbol)s, %(interval)s, b.open_time, b.open, b.high, b.low, b.close,
       b.volume, b.is_anomaly
FROM unnest(%(open_times)s::timestamptz[], %(opens)s::float8[], %(highs)s::float8[],
            %(lows)s::float8[], %(closes)s::float8[], %(volumes)s::float8[],
            %(anomalies)s::boolean[])
     AS b(open_time, open, high, low, close, volume, is_anomaly)
ON CONFLICT (source, symbol, interval, open_time) DO UPDATE
SET open = excluded.open, high = excluded.high, low = excluded.low, close = excluded.close,
    volume = excluded.volume, is_anomaly = excluded.is_anomaly, ingested_at = now();

-- klines_latest --
-- The latest %(limit)s bars of a series, oldest first (NULL source: any source).
SELECT source, symbol, interval, open_time, open, high, low, close, volume, is_anomaly
FROM (SELECT * FROM tickbase.klines
      WHERE symbol = %(symbol)s AND interval = %(interval)s
        AND (%(source)s::text IS NULL OR source = %(source)s)
      ORDER BY open_time DESC
      LIMIT %(limit)s) latest
ORDER BY open_time;

-- klines_previous_close --
-- The close before a series' first new bar (for the anomaly check).
SELECT close FROM tickbase.klines
WHERE source = %(source)s AND symbol = %(symbol)s AND interval = %(interval)s
  AND open_time < %(before)s
ORDER BY open_time DESC LIMIT 1;

-- klines_series --
-- Every stored series (what the read API and the datafeed can serve).
SELECT DISTINCT symbol, interval FROM tickbase.klines ORDER BY symbol, interval;

-- klines_range --
-- A series' bars with from <= open_time < to, oldest first, at most %(limit)s
-- (the newest ones when there are more: a chart asks for the latest first).
SELECT source, symbol, interval, open_time, open, high, low, close, volume, is_anomaly
FROM (SELECT * FROM tickbase.klines
      WHERE symbol = %(symbol)s AND interval = %(interval)s
        AND open_time >= %(start)s AND open_time < %(end)s
      ORDER BY open_time DESC
      LIMIT %(limit)s) window_bars
ORDER BY open_time;

-- klines_before --
-- The open time of the last bar before an instant (the datafeed's nextTime).
SELECT max(open_time) FROM tickbase.klines
WHERE symbol = %(symbol)s AND interval = %(interval)s AND open_time < %(before)s;

-- cache_put --
-- Write through: the value and when it stops being fresh.
INSERT INTO tickbase.market_cache (key, value, expires_at, stale)
VALUES (%(key)s, %(value)s::jsonb, clock_timestamp() + make_interval(secs => %(ttl)s), false)
ON CONFLICT (key) DO UPDATE
SET value = excluded.value, expires_at = excluded.expires_at, stale = false,
    updated_at = clock_timestamp();

-- cache_get --
-- The value with whether it is still fresh (an expired one is kept: when every
-- source is down, the last value is served, marked stale).
SELECT value, expires_at > clock_timestamp() AS fresh, stale, updated_at
FROM tickbase.market_cache WHERE key = %(key)s;

-- cache_mark_stale --
UPDATE tickbase.market_cache SET stale = true WHERE key = %(key)s RETURNING value;

-- indicator_state_get --
SELECT state FROM tickbase.indicator_state
WHERE source = %(source)s AND symbol = %(symbol)s AND interval = %(interval)s;

-- indicator_state_put --
INSERT INTO tickbase.indicator_state (source, symbol, interval, last_open_time, state)
VALUES (%(source)s, %(symbol)s, %(interval)s, %(last_open_time)s, %(state)s::jsonb)
ON CONFLICT (source, symbol, interval) DO UPDATE
SET last_open_time = excluded.last_open_time, state = excluded.state, updated_at = now();

-- klines_after --
-- A series' bars of one source after an instant, oldest first.
SELECT source, symbol, interval, open_time, open, high, low, close, volume, is_anomaly
FROM tickbase.klines
WHERE source = %(source)s AND symbol = %(symbol)s AND interval = %(interval)s
  AND (%(after)s::timestamptz IS NULL OR open_time > %(after)s)
ORDER BY open_time
LIMIT %(limit)s;

-- klines_series_exists --
-- Whether a series has any bar (one probe of klines_series_idx).
SELECT EXISTS (SELECT 1 FROM tickbase.klines
               WHERE symbol = %(symbol)s AND interval = %(interval)s);
