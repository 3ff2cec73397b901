-- Named statements of the scheduler block.

-- schedule_insert --
-- Create a schedule. The unique index on active names refuses a duplicate.
INSERT INTO tickbase.schedules (
    name, task_type, kind, cron, interval_seconds, timezone, enabled, paused, payload, queue,
    priority, max_retries, retry_interval, timeout, misfire_grace_seconds, coalesce,
    max_instances, next_fire_at, description, origin)
VALUES (
    %(name)s, %(task_type)s, %(kind)s, %(cron)s, %(interval_seconds)s, %(timezone)s,
    %(enabled)s, false, %(payload)s::jsonb, %(queue)s, %(priority)s, %(max_retries)s,
    %(retry_interval)s, %(timeout)s, %(misfire_grace_seconds)s, %(coalesce)s,
    %(max_instances)s, %(next_fire_at)s, %(description)s, %(origin)s)
RETURNING *;

-- schedule_sync_code --
-- Register a code-defined schedule at start-up, idempotently: insert it, or
-- update a code schedule whose definition changed. Its run-time state
-- (enabled, paused) stays as the operators left it; next_fire_at is
-- recomputed only when the timing changed. Builtin schedules are inserted once
-- and then belong to the user (DO NOTHING for them: origin <> 'code').
INSERT INTO tickbase.schedules AS s (
    name, task_type, kind, cron, interval_seconds, timezone, enabled, paused, payload, queue,
    priority, max_retries, retry_interval, timeout, misfire_grace_seconds, coalesce,
    max_instances, next_fire_at, description, origin)
VALUES (
    %(name)s, %(task_type)s, %(kind)s, %(cron)s, %(interval_seconds)s, %(timezone)s,
    %(enabled)s, false, %(payload)s::jsonb, %(queue)s, %(priority)s, %(max_retries)s,
    %(retry_interval)s, %(timeout)s, %(misfire_grace_seconds)s, %(coalesce)s,
    %(max_instances)s, %(next_fire_at)s, %(description)s, %(origin)s)
ON CONFLICT (name) WHERE removed_at IS NULL DO UPDATE
SET task_type = excluded.task_type, kind = excluded.kind, cron = excluded.cron,
    interval_seconds = excluded.interval_seconds, timezone = excluded.timezone,
    payload = excluded.payload, queue = excluded.queue, priority = excluded.priority,
    max_retries = excluded.max_retries, retry_interval = excluded.retry_interval,
    timeout = excluded.timeout, misfire_grace_seconds = excluded.misfire_grace_seconds,
    coalesce = excluded.coalesce, max_instances = excluded.max_instances,
    description = excluded.description, updated_at = now(),
    next_fire_at = CASE
        WHEN (s.kind, s.cron, s.interval_seconds, s.timezone)
             IS DISTINCT FROM (excluded.kind, excluded.cron, excluded.interval_seconds,
                               excluded.timezone)
        THEN excluded.next_fire_at ELSE s.next_fire_at END
WHERE s.origin = 'code' AND excluded.origin = 'code'
  AND (s.task_type, s.kind, s.cron, s.interval_seconds, s.timezone, s.payload, s.queue,
       s.priority, s.max_retries, s.retry_interval, s.timeout, s.misfire_grace_seconds,
       s.coalesce, s.max_instances, s.description)
      IS DISTINCT FROM
      (excluded.task_type, excluded.kind, excluded.cron, excluded.interval_seconds,
       excluded.timezone, excluded.payload, excluded.queue, excluded.priority,
       excluded.max_retries, excluded.retry_interval, excluded.timeout,
       excluded.misfire_grace_seconds, excluded.coalesce, excluded.max_instances,
       excluded.description)
RETURNING id;

-- schedule_update --
-- Replace the definition of a schedule (the caller merged old and new values).
UPDATE tickbase.schedules
SET task_type = %(task_type)s, kind = %(kind)s, cron = %(cron)s,
    interval_seconds = %(interval_seconds)s, timezone = %(timezone)s,
    payload = %(payload)s::jsonb, queue = %(queue)s, priority = %(priority)s,
    max_retries = %(max_retries)s, retry_interval = %(retry_interval)s, timeout = %(timeout)s,
    misfire_grace_seconds = %(misfire_grace_seconds)s, coalesce = %(coalesce)s,
    max_instances = %(max_instances)s, description = %(description)s,
    next_fire_at = %(next_fire_at)s, updated_at = now()
WHERE id = %(id)s AND removed_at IS NULL
RETURNING *;

-- schedule_set_state --
-- Enable/disable or pause/resume. Coming back to life starts from the next
-- fire after now: fires while disabled or paused are not caught up.
UPDATE tickbase.schedules
SET enabled = coalesce(%(enabled)s, enabled),
    paused = coalesce(%(paused)s, paused),
    next_fire_at = coalesce(%(next_fire_at)s, next_fire_at),
    updated_at = now()
WHERE id = %(id)s AND removed_at IS NULL
RETURNING *;

-- schedule_remove --
-- Remove a schedule; its row and its executions stay for history.
UPDATE tickbase.schedules
SET removed_at = now(), enabled = false, updated_at = now()
WHERE id = %(id)s AND removed_at IS NULL
RETURNING *;

-- schedule_get --
-- One active schedule by name, with its displayed status.
SELECT s.*, latest.status AS latest_status
FROM tickbase.schedules s
LEFT JOIN LATERAL (
    SELECT status FROM tickbase.tasks t
    WHERE t.schedule_id = s.id ORDER BY t.fire_at DESC LIMIT 1
) latest ON true
WHERE s.name = %(name)s AND s.removed_at IS NULL;

-- schedule_list --
-- By name, keyset-paged (after: the last name seen; limit NULL: all), with
-- optional filters on the name (contains, any case) and the task type.
SELECT s.*, latest.status AS latest_status
FROM tickbase.schedules s
LEFT JOIN LATERAL (
    SELECT status FROM tickbase.tasks t
    WHERE t.schedule_id = s.id ORDER BY t.fire_at DESC LIMIT 1
) latest ON true
WHERE (s.removed_at IS NULL OR %(include_removed)s)
  AND (%(after)s::text IS NULL OR s.name > %(after)s)
  AND (%(name_contains)s::text IS NULL OR strpos(lower(s.name), lower(%(name_contains)s)) > 0)
  AND (%(task_type)s::text IS NULL OR s.task_type = %(task_type)s)
ORDER BY s.name, s.id
LIMIT %(limit)s;

-- schedule_names --
SELECT name FROM tickbase.schedules WHERE removed_at IS NULL;

-- schedule_due --
-- Schedules whose next fire has come, locked for this tick (SKIP LOCKED: a
-- second ticker, leader or not, never waits and never fires the same rows),
-- with the count of their executions not yet final (for max_instances).
-- Schedules whose task type matches one of the "skip" LIKE patterns (the
-- market-data tasks when this node runs without market data) are left alone.
-- %(now)s: the instant to tick at (NULL: the database clock; a test ticks at
-- an instant instead of waiting for it).
SELECT s.id, s.name, s.task_type, s.kind, s.cron, s.interval_seconds, s.timezone,
       s.payload, s.queue, s.priority, s.max_retries, s.retry_interval, s.timeout,
       s.misfire_grace_seconds, s.coalesce, s.max_instances, s.next_fire_at, s.created_at,
       -- Counting stops at max_instances: that is all the decision needs.
       (SELECT count(*) FROM (
            SELECT 1 FROM tickbase.tasks t
            WHERE t.schedule_id = s.id AND t.status IN ('pending', 'running', 'retrying')
            LIMIT s.max_instances) o) AS outstanding,
       coalesce(%(now)s::timestamptz, clock_timestamp()) AS now
FROM tickbase.schedules s
WHERE s.enabled AND NOT s.paused AND s.removed_at IS NULL AND s.kind <> 'manual'
  AND s.next_fire_at <= coalesce(%(now)s::timestamptz, clock_timestamp())
  AND NOT s.task_type LIKE ANY(%(skip)s::text[])
ORDER BY s.next_fire_at
LIMIT %(limit)s
FOR UPDATE OF s SKIP LOCKED;

-- schedule_next_due --
-- When the ticker must wake next, and the database clock to measure it by;
-- skipped schedules as in schedule_due (an overdue one would wake it at once, forever).
-- %(now)s as in schedule_due.
SELECT min(next_fire_at), coalesce(%(now)s::timestamptz, clock_timestamp())
FROM tickbase.schedules
WHERE enabled AND NOT paused AND removed_at IS NULL AND kind <> 'manual'
  AND NOT task_type LIKE ANY(%(skip)s::text[]);

-- schedule_advance_many --
-- Move each fired schedule to its next fire. Guarded by the next_fire_at the
-- tick read, and fenced: nothing is written unless the caller still holds the
-- leader lease with this token (the tick then rolls back, fires included).
UPDATE tickbase.schedules s
SET next_fire_at = a.next_fire_at,
    last_fire_at = coalesce(a.last_fire_at, s.last_fire_at)
FROM jsonb_to_recordset(%(advances)s::jsonb) AS a(
    id bigint, expected timestamptz, next_fire_at timestamptz, last_fire_at timestamptz)
WHERE s.id = a.id AND s.next_fire_at = a.expected
  AND EXISTS (
    SELECT 1 FROM tickbase.leases
    WHERE name = %(lease)s AND holder = %(holder)s AND token = %(token)s
      AND expires_at > clock_timestamp());

-- schedule_events_add --
INSERT INTO tickbase.schedule_events (schedule_id, event, fire_at, task_id, detail)
SELECT e.schedule_id, e.event, e.fire_at, e.task_id, e.detail
FROM jsonb_to_recordset(%(events)s::jsonb) AS e(
    schedule_id bigint, event text, fire_at timestamptz, task_id bigint, detail jsonb);

-- tick_begin --
-- First statement of a tick's transaction. Changes made by the ticker itself do
-- not wake the tickers again (the schedules trigger reads tickbase.ticker). A
-- ticker paused inside the transaction would keep its due schedules locked
-- (a successor's tick skips locked rows, so they would not fire): the server
-- ends its session once it has been idle in the transaction %(idle_ms)s ms.
SELECT set_config('tickbase.ticker', 'on', true),
       set_config('idle_in_transaction_session_timeout', %(idle_ms)s::text, true);

-- schedule_fire_source --
-- What a manual fire of a schedule enqueues (its task's options), and the
-- instant the fire stands for: now, by the database's clock.
SELECT id, task_type, queue, priority, payload, max_retries, retry_interval, timeout,
       clock_timestamp() AS fire_at
FROM tickbase.schedules WHERE id = %(id)s AND removed_at IS NULL;

-- schedule_executions --
-- A schedule's executions (its task rows), newest fire first.
SELECT t.id, t.fire_at, t.status, t.attempts, t.started_at, t.finished_at,
       extract(epoch FROM t.finished_at - t.started_at) AS duration, t.result, t.error,
       EXISTS (SELECT 1 FROM tickbase.schedule_events e
               WHERE e.task_id = t.id AND e.event = 'triggered') AS manual
FROM tickbase.tasks t
WHERE t.schedule_id = %(id)s
  AND (%(before)s::timestamptz IS NULL OR t.fire_at < %(before)s)
ORDER BY t.fire_at DESC
LIMIT %(limit)s;

-- schedule_stats --
SELECT
    count(*) FILTER (WHERE status = 'pending') AS pending,
    count(*) FILTER (WHERE status = 'running') AS running,
    count(*) FILTER (WHERE status = 'retrying') AS retrying,
    count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
    count(*) FILTER (WHERE status = 'failed') AS failed,
    count(*) FILTER (WHERE status = 'cancelled') AS cancelled,
    avg(extract(epoch FROM finished_at - started_at)) AS avg_duration,
    percentile_cont(0.95) WITHIN GROUP (
        ORDER BY extract(epoch FROM finished_at - started_at)) AS p95_duration,
    max(fire_at) AS last_fire_at
FROM tickbase.tasks WHERE schedule_id = %(id)s;

-- schedule_events_list --
SELECT schedule_id, at, event, fire_at, task_id, detail FROM tickbase.schedule_events
WHERE schedule_id = %(id)s ORDER BY at DESC LIMIT %(limit)s;
