-- Named statements of the market-data block.

-- klines_upsert --
-- A batch of bars of one series in one statement (arrays, one round trip); a
-- bar already stored is updated (a source may revise a bar). A close more than
-- %(anomaly_move)s (a fraction) from the previous close (the batch's previous
-- bar, or the stored one before the batch) is kept and flagged is_anomaly; the
-- newly flagged bars come back with that previous close, for the log (a bar
-- stored flagged before with the same close is not reported again: collecting
-- the same window every 5 minutes, or restarting, does not repeat the log).
-- %(durable)s false: committed without waiting for the WAL flush (the
-- collector's path: what it stores is re-fetched on its next run, and its
-- task's synchronous outcome flushes the WAL past these rows anyway).
-- %(new_state)s not NULL (IndicatorStates.store_and_advance, whose process
-- holds the series' indicator state in memory and has fed it these bars): the
-- state is saved in the same statement, but only if the saved one is the one
-- it started from (last_open_time = %(state_from)s) and no bar of the series
-- lies between that and this batch; otherwise nothing is saved and the caller
-- advances from the database. %(backfilled)s true: the bars are stored marked
-- backfilled (fetched from the REST API after the live stream missed trades).
-- %(live)s true (the real-time writer): a stored bar marked backfilled is left
-- as it is, since the live bar was aggregated from incomplete trades; other
-- writers (collectors, backfill) replace it as before. Rows back: row_kind
-- 'anomaly' (open_time, close, previous_close) and 'saved' when the state was
-- saved.
WITH b AS (
    SELECT b.*
    FROM unnest(%(open_times)s::timestamptz[], %(opens)s::float8[], %(highs)s::float8[],
                %(lows)s::float8[], %(closes)s::float8[], %(volumes)s::float8[],
                %(close_times)s::timestamptz[], %(quote_volumes)s::float8[],
                %(trade_counts)s::int8[], %(taker_base)s::float8[],
                %(taker_quote)s::float8[], %(filled)s::boolean[])
         AS b(open_time, open, high, low, close, volume, close_time, quote_volume,
              trade_count, taker_buy_base_volume, taker_buy_quote_volume, is_filled),
         (SELECT set_config('synchronous_commit',
                            CASE WHEN %(durable)s::boolean
                                 THEN current_setting('synchronous_commit') ELSE 'off' END,
                            true)) AS commit_mode
), judged AS (
    SELECT b.*,
           coalesce(lag(b.close) OVER (ORDER BY b.open_time),
                    (SELECT k.close FROM tickbase.klines k
                     WHERE k.source = %(source)s AND k.symbol = %(symbol)s
                       AND k.interval = %(interval)s
                       AND k.open_time < (SELECT min(open_time) FROM b)
                     ORDER BY k.open_time DESC LIMIT 1)) AS previous_close,
           coalesce((SELECT k.is_anomaly AND k.close = b.close FROM tickbase.klines k
                     WHERE k.source = %(source)s AND k.symbol = %(symbol)s
                       AND k.interval = %(interval)s AND k.open_time = b.open_time),
                    false) AS already_flagged
    FROM b
), stored AS (
    INSERT INTO tickbase.klines AS k (source, symbol, interval, open_time, open, high, low,
                                      close, volume, close_time, quote_volume, trade_count,
                                      taker_buy_base_volume, taker_buy_quote_volume,
                                      is_anomaly, is_filled, backfilled)
    SELECT %(source)s, %(symbol)s, %(interval)s, j.open_time, j.open, j.high, j.low, j.close,
           j.volume, j.close_time, j.quote_volume, j.trade_count, j.taker_buy_base_volume,
           j.taker_buy_quote_volume,
           coalesce(abs(j.close - j.previous_close) > %(anomaly_move)s * j.previous_close,
                    false),
           j.is_filled, %(backfilled)s::boolean
    FROM judged j
    ON CONFLICT (source, symbol, interval, open_time) DO UPDATE
    SET open = excluded.open, high = excluded.high, low = excluded.low, close = excluded.close,
        volume = excluded.volume, close_time = excluded.close_time,
        quote_volume = excluded.quote_volume, trade_count = excluded.trade_count,
        taker_buy_base_volume = excluded.taker_buy_base_volume,
        taker_buy_quote_volume = excluded.taker_buy_quote_volume,
        is_anomaly = excluded.is_anomaly, is_filled = excluded.is_filled,
        backfilled = excluded.backfilled, ingested_at = now()
    WHERE NOT (%(live)s::boolean AND k.backfilled)
    RETURNING open_time, is_anomaly
), state_saved AS (
    UPDATE tickbase.indicator_state i
    SET state = %(new_state)s::jsonb, last_open_time = %(new_last)s, updated_at = now()
    WHERE %(new_state)s::jsonb IS NOT NULL
      AND i.source = %(source)s AND i.symbol = %(symbol)s AND i.interval = %(interval)s
      AND i.last_open_time = %(state_from)s
      AND NOT EXISTS (SELECT 1 FROM tickbase.klines k
                      WHERE k.source = %(source)s AND k.symbol = %(symbol)s
                        AND k.interval = %(interval)s AND k.open_time > %(state_from)s
                        AND k.open_time < (SELECT min(open_time) FROM b))
    RETURNING 1
)
SELECT 'anomaly' AS row_kind, j.open_time, j.close, j.previous_close
FROM stored s JOIN judged j USING (open_time)
WHERE s.is_anomaly AND NOT j.already_flagged
UNION ALL
SELECT 'saved', NULL, NULL, NULL FROM state_saved;

-- klines_latest --
-- The latest %(limit)s bars of a series, oldest first. NULL source: the series'
-- current source, the one of its newest bar (a live source before the replay's).
SELECT source, symbol, interval, open_time, open, high, low, close, volume, is_anomaly,
       is_filled
FROM (SELECT * FROM tickbase.klines
      WHERE symbol = %(symbol)s AND interval = %(interval)s
        AND source = coalesce(%(source)s::text,
                              (SELECT c.source FROM tickbase.klines c
                               WHERE c.symbol = %(symbol)s AND c.interval = %(interval)s
                               ORDER BY c.open_time DESC, c.source = 'replay' LIMIT 1))
      ORDER BY open_time DESC
      LIMIT %(limit)s) latest
ORDER BY open_time;

-- klines_series --
-- Every stored series (what the read API and the datafeed can serve).
SELECT DISTINCT symbol, interval FROM tickbase.klines ORDER BY symbol, interval;

-- klines_range --
-- A series' bars with from <= open_time < to, oldest first, at most %(limit)s
-- (the newest ones when there are more: a chart asks for the latest first),
-- from the series' current source (see klines_latest).
SELECT source, symbol, interval, open_time, open, high, low, close, volume, is_anomaly,
       is_filled
FROM (SELECT * FROM tickbase.klines
      WHERE symbol = %(symbol)s AND interval = %(interval)s
        AND open_time >= %(start)s AND open_time < %(end)s
        AND source = (SELECT c.source FROM tickbase.klines c
                      WHERE c.symbol = %(symbol)s AND c.interval = %(interval)s
                      ORDER BY c.open_time DESC, c.source = 'replay' LIMIT 1)
      ORDER BY open_time DESC
      LIMIT %(limit)s) window_bars
ORDER BY open_time;

-- klines_before --
-- The open time of the last bar before an instant (the datafeed's nextTime).
SELECT max(open_time) FROM tickbase.klines
WHERE symbol = %(symbol)s AND interval = %(interval)s AND open_time < %(before)s
  AND source = (SELECT c.source FROM tickbase.klines c
                WHERE c.symbol = %(symbol)s AND c.interval = %(interval)s
                ORDER BY c.open_time DESC, c.source = 'replay' LIMIT 1);

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

-- klines_series_exists --
-- Whether a series has any bar (one probe of klines_series_idx).
SELECT EXISTS (SELECT 1 FROM tickbase.klines
               WHERE symbol = %(symbol)s AND interval = %(interval)s);

-- observations_upsert --
-- A batch of one series' observations (cleaned: no missing value left) in one
-- statement; a value already stored is replaced (sources revise recent values),
-- except that a default (source 'default', served when every source was down)
-- never replaces a value a source gave: a real value replaces a default, a
-- default replaces only a default. The rows stored come back.
INSERT INTO tickbase.observations AS o (series, observed_at, kind, source, value, label,
                                        is_filled)
SELECT %(series)s, b.observed_at, %(kind)s, %(source)s, b.value, b.label, b.is_filled
FROM unnest(%(times)s::timestamptz[], %(values)s::float8[], %(labels)s::text[],
            %(filled)s::boolean[]) AS b(observed_at, value, label, is_filled)
ON CONFLICT (series, observed_at) DO UPDATE
SET kind = excluded.kind, source = excluded.source, value = excluded.value,
    label = excluded.label, is_filled = excluded.is_filled, ingested_at = now()
WHERE excluded.source <> 'default' OR o.source = 'default'
RETURNING observed_at;

-- observations_latest --
-- The latest %(limit)s observations of a series, oldest first.
SELECT series, observed_at, kind, source, value, label, is_filled
FROM (SELECT * FROM tickbase.observations WHERE series = %(series)s
      ORDER BY observed_at DESC LIMIT %(limit)s) latest
ORDER BY observed_at;

-- observations_series --
-- Every stored non-price series with its kind (what the read API can serve).
SELECT DISTINCT series, kind FROM tickbase.observations ORDER BY series;

-- series_integrity_check --
-- How many of a window's grid slots hold a traded (not filled) bar of any
-- source; the result is kept per series (the data_completeness alert reads it).
WITH slots AS (
    SELECT generate_series(%(start)s::timestamptz,
                           %(end)s::timestamptz - make_interval(secs => %(step)s),
                           make_interval(secs => %(step)s)) AS slot
), traded AS (
    SELECT DISTINCT open_time FROM tickbase.klines
    WHERE symbol = %(symbol)s AND interval = %(interval)s
      AND open_time >= %(start)s AND open_time < %(end)s AND NOT is_filled
), counted AS (
    SELECT count(*)::int AS expected, count(t.open_time)::int AS present,
           coalesce(jsonb_agg(s.slot ORDER BY s.slot) FILTER (WHERE t.open_time IS NULL),
                    '[]'::jsonb) AS missing
    FROM slots s LEFT JOIN traded t ON t.open_time = s.slot
)
INSERT INTO tickbase.series_integrity AS i (symbol, interval, window_start, window_end,
                                            expected, present, completeness, missing,
                                            checked_at)
SELECT %(symbol)s, %(interval)s, %(start)s, %(end)s, expected, present,
       CASE WHEN expected = 0 THEN 100 ELSE 100.0 * present / expected END, missing,
       clock_timestamp()
FROM counted
ON CONFLICT (symbol, interval) DO UPDATE
SET window_start = excluded.window_start, window_end = excluded.window_end,
    expected = excluded.expected, present = excluded.present,
    completeness = excluded.completeness, missing = excluded.missing,
    checked_at = excluded.checked_at
RETURNING expected, present, completeness, missing;

-- indicator_state_klines_after --
-- One round trip of IndicatorStates.advance: the bars of one source stored after
-- the series' saved indicator state (all of them before its first advance),
-- oldest first, at most %(limit)s, with the saved state on the first row only
-- (NULL there before the first advance). One statement, so one snapshot: the
-- state and the bars after it always belong together.
WITH saved AS (
    SELECT state, last_open_time FROM tickbase.indicator_state
    WHERE source = %(source)s AND symbol = %(symbol)s AND interval = %(interval)s
)
SELECT k.open_time, k.open, k.high, k.low, k.close, k.volume,
       CASE WHEN row_number() OVER (ORDER BY k.open_time) = 1
            THEN (SELECT state FROM saved) END AS state
FROM (SELECT open_time, open, high, low, close, volume FROM tickbase.klines
      WHERE source = %(source)s AND symbol = %(symbol)s AND interval = %(interval)s
        AND open_time > coalesce((SELECT last_open_time FROM saved), '-infinity')
      ORDER BY open_time
      LIMIT %(limit)s) k
ORDER BY k.open_time;

-- indicator_state_put_async --
-- The new indicator state, committed without waiting for its WAL flush
-- (synchronous_commit off for this statement's own transaction only). The
-- state is derived data: a database crash can lose at most the last fraction
-- of a second of saves, which leaves an older, consistent (state,
-- last_open_time) row that the next advance continues from exactly.
INSERT INTO tickbase.indicator_state (source, symbol, interval, last_open_time, state)
SELECT %(source)s, %(symbol)s, %(interval)s, %(last_open_time)s, %(state)s::jsonb
FROM (SELECT set_config('synchronous_commit', 'off', true)) AS async_commit
ON CONFLICT (source, symbol, interval) DO UPDATE
SET last_open_time = excluded.last_open_time, state = excluded.state, updated_at = now()
-- Two advances of one series that overlap (a scheduled and a triggered
-- collection) compute the same states; the slower never moves it back.
WHERE indicator_state.last_open_time <= excluded.last_open_time;

-- klines_aggregate --
-- A series' stored %(interval)s bars (of its current source, see klines_latest)
-- aggregated into coarser buckets: open of the first bar, highest high, lowest
-- low, close of the last bar, summed volume. Buckets are aligned to UTC
-- boundaries of the target: date_bin by %(step)s seconds from %(origin)s (1970,
-- or a Monday for weeks), or calendar months when %(months)s. The scan reads
-- whole buckets (%(scan_start)s..%(scan_end)s, bucket-aligned, so the index
-- range does the work); the buckets kept start in %(start)s..%(end)s, the
-- newest %(limit)s of them, oldest first.
WITH current_source AS (
    SELECT c.source FROM tickbase.klines c
    WHERE c.symbol = %(symbol)s AND c.interval = %(interval)s
    ORDER BY c.open_time DESC, c.source = 'replay' LIMIT 1
), binned AS (
    SELECT CASE WHEN %(months)s::boolean THEN date_trunc('month', k.open_time, 'UTC')
                ELSE date_bin(make_interval(secs => %(step)s), k.open_time,
                              %(origin)s::timestamptz) END AS bucket,
           k.open_time, k.open, k.high, k.low, k.close, k.volume
    FROM tickbase.klines k
    WHERE k.symbol = %(symbol)s AND k.interval = %(interval)s
      AND k.source = (SELECT source FROM current_source)
      AND k.open_time >= %(scan_start)s AND k.open_time < %(scan_end)s
), buckets AS (
    SELECT bucket,
           (array_agg(open ORDER BY open_time))[1] AS open,
           max(high) AS high,
           min(low) AS low,
           (array_agg(close ORDER BY open_time DESC))[1] AS close,
           sum(volume) AS volume
    FROM binned
    WHERE bucket >= %(start)s AND bucket < %(end)s
    GROUP BY bucket
    ORDER BY bucket DESC
    LIMIT %(limit)s
)
SELECT bucket, open, high, low, close, volume FROM buckets ORDER BY bucket;

-- klines_price_decimals --
-- The most decimals among a symbol's %(sample)s newest stored closes (any
-- interval): the price precision of a symbol no table describes. float8 to
-- numeric keeps 15 significant digits, so binary noise past them never counts.
SELECT max(scale(close::numeric))
FROM (SELECT close FROM tickbase.klines WHERE symbol = %(symbol)s
      ORDER BY open_time DESC LIMIT %(sample)s) newest;

-- klines_series_summary --
-- Every stored series (at most %(limit)s) with its current source (that of its
-- newest bar, a live source before the replay's; see klines_latest), how many
-- bars of that source it holds and their first and last open times. The series
-- are found by a skip scan of klines_series_idx (one index probe per series, not
-- a read of every bar); the count and the first bar read the primary key's
-- range of that one source and series.
WITH RECURSIVE series AS (
    (SELECT k.symbol, k.interval FROM tickbase.klines k ORDER BY k.symbol, k.interval LIMIT 1)
    UNION ALL
    SELECT following.symbol, following.interval
    FROM series s
    CROSS JOIN LATERAL (
        SELECT k.symbol, k.interval FROM tickbase.klines k
        WHERE (k.symbol, k.interval) > (s.symbol, s.interval)
        ORDER BY k.symbol, k.interval LIMIT 1) following
)
SELECT s.symbol, s.interval, newest.source, span.bars, span.first_open_time,
       newest.open_time AS last_open_time, now() AS checked_at
FROM (SELECT * FROM series LIMIT %(limit)s) s
CROSS JOIN LATERAL (
    SELECT c.source, c.open_time FROM tickbase.klines c
    WHERE c.symbol = s.symbol AND c.interval = s.interval
    ORDER BY c.open_time DESC, c.source = 'replay' LIMIT 1) newest
CROSS JOIN LATERAL (
    SELECT count(*) AS bars, min(k.open_time) AS first_open_time FROM tickbase.klines k
    WHERE k.source = newest.source AND k.symbol = s.symbol AND k.interval = s.interval) span
ORDER BY s.symbol, s.interval;

-- series_integrity_list --
-- The last integrity check of each series (at most %(limit)s), by series.
SELECT symbol, interval, window_start, window_end, expected, present, completeness, missing,
       checked_at
FROM tickbase.series_integrity
ORDER BY symbol, interval
LIMIT %(limit)s;
