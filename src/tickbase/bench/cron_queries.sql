-- Named statements of ``tickbase bench cron`` (read-only, on the run's fresh database).
-- Every statement takes the bench schedules' ids as %(ids)s, so fires of the builtin
-- maintenance schedules (which the scheduler process registers) never count.

-- cron_clock --
-- The database clock: fire_at and created_at are on it, so the window is too.
SELECT clock_timestamp();

-- cron_first_fire --
-- Whether the scheduler has enqueued any bench fire yet (its start-up is over).
SELECT min(created_at) FROM tickbase.tasks WHERE schedule_id = ANY(%(ids)s);

-- cron_next_due --
-- The earliest next fire of the bench schedules: once it is past the window, every
-- fire of the window has been planned and written (fires and the advance share a
-- transaction in the ticker).
SELECT min(next_fire_at) FROM tickbase.schedules WHERE id = ANY(%(ids)s);

-- cron_fire_stats --
-- Fires of the window and their lag (created_at - fire_at), in milliseconds.
-- percentile_cont interpolates, like most published latency figures.
SELECT count(*) AS fires,
       count(DISTINCT (schedule_id, fire_at)) AS distinct_fires,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY lag_ms) AS lag_p50_ms,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY lag_ms) AS lag_p99_ms,
       max(lag_ms) AS lag_max_ms
FROM (
    SELECT schedule_id, fire_at,
           extract(epoch FROM created_at - fire_at)::float8 * 1000.0 AS lag_ms
    FROM tickbase.tasks
    WHERE schedule_id = ANY(%(ids)s)
      AND fire_at >= %(start)s AND fire_at < %(end)s
) AS window_fires;

-- cron_event_counts --
-- Fires that did not become tasks during the window. A summarised 'missed' event has
-- no fire_at; it counts when it was written at or after the window start.
SELECT count(*) FILTER (WHERE event = 'skipped') AS skipped,
       count(*) FILTER (WHERE event = 'missed') AS missed
FROM tickbase.schedule_events
WHERE schedule_id = ANY(%(ids)s)
  AND event IN ('skipped', 'missed')
  AND ((fire_at >= %(start)s AND fire_at < %(end)s)
       OR (fire_at IS NULL AND at >= %(start)s));
