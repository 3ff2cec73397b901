-- Cluster-wide limits (tickbase.queue.limits): the task types' limits, queue
-- concurrency, and the concurrency keys in use. The limited claim itself
-- (task_claim_limited) stays in queries.sql, beside the plain claim.

-- task_limits_sync --
-- Store the limits an app defines for its task types (rows of types it
-- defines without limits are removed), and put the tasks already waiting under
-- the limits as they now are. Returns the task types whose limits changed.
WITH wanted AS (
    SELECT * FROM jsonb_to_recordset(%(limits)s::jsonb) AS w(
        task_type text, rate_max integer, rate_window_seconds float8,
        concurrency_key text, concurrency_limit integer)
), removed AS (
    DELETE FROM tickbase.task_limits l
    WHERE l.task_type = ANY(%(defined)s::text[])
      AND NOT EXISTS (SELECT 1 FROM wanted w WHERE w.task_type = l.task_type)
    RETURNING l.task_type
), upserted AS (
    INSERT INTO tickbase.task_limits AS l (task_type, rate_max, rate_window_seconds,
                                           concurrency_key, concurrency_limit)
    SELECT task_type, rate_max, rate_window_seconds, concurrency_key,
           coalesce(concurrency_limit, 1)
    FROM wanted
    ON CONFLICT (task_type) DO UPDATE
    SET rate_max = excluded.rate_max, rate_window_seconds = excluded.rate_window_seconds,
        concurrency_key = excluded.concurrency_key,
        concurrency_limit = excluded.concurrency_limit, updated_at = now()
    WHERE (l.rate_max, l.rate_window_seconds, l.concurrency_key, l.concurrency_limit)
          IS DISTINCT FROM (excluded.rate_max, excluded.rate_window_seconds,
                            excluded.concurrency_key, excluded.concurrency_limit)
    RETURNING l.task_type, l.rate_max IS NOT NULL AS rate_limited
), changed AS (
    SELECT task_type, rate_limited FROM upserted
    UNION ALL
    SELECT task_type, false FROM removed
), flagged AS (
    UPDATE tickbase.tasks t SET rate_limited = c.rate_limited
    FROM changed c
    WHERE t.task_type = c.task_type AND t.status IN ('pending', 'retrying')
      AND t.rate_limited IS DISTINCT FROM c.rate_limited
)
SELECT task_type FROM changed ORDER BY task_type;

-- task_limits_list --
SELECT task_type, rate_max, rate_window_seconds, concurrency_key, concurrency_limit, updated_at
FROM tickbase.task_limits ORDER BY task_type;

-- queue_limit_set --
INSERT INTO tickbase.queue_limits (queue, concurrency) VALUES (%(queue)s, %(concurrency)s)
ON CONFLICT (queue) DO UPDATE SET concurrency = excluded.concurrency, updated_at = now();

-- queue_limit_clear --
DELETE FROM tickbase.queue_limits WHERE queue = %(queue)s RETURNING queue;

-- queue_limits_list --
-- Each limited queue with its running tasks now (cluster-wide).
SELECT l.queue, l.concurrency,
       (SELECT count(*) FROM tickbase.tasks t
        WHERE t.status = 'running' AND t.queue = l.queue) AS running,
       l.updated_at
FROM tickbase.queue_limits l ORDER BY l.queue;

-- concurrency_keys_running --
-- Concurrency keys held by running tasks now, by key (a page after %(after)s):
-- how many running tasks hold each, and its limit (K of the key's oldest
-- unfinished task, as task_claim_limited reads it). Ranges over the running
-- set (tasks_concurrency_key_idx, or the running tasks' lease index) and one
-- index row per key shown: never the waiting tasks of a deep key.
SELECT r.key, r.running, head.k AS concurrency_limit, r.task_types, r.oldest_started_at
FROM (
    SELECT concurrency_key AS key, count(*) AS running,
           array_agg(DISTINCT task_type ORDER BY task_type) AS task_types,
           min(started_at) AS oldest_started_at
    FROM tickbase.tasks
    WHERE status = 'running' AND concurrency_key IS NOT NULL
      AND (%(after)s::text IS NULL OR concurrency_key > %(after)s::text)
    GROUP BY concurrency_key
    ORDER BY concurrency_key
    LIMIT %(limit)s
) r
CROSS JOIN LATERAL (
    SELECT coalesce(concurrency_limit, 1) AS k FROM tickbase.tasks
    WHERE concurrency_key = r.key AND status IN ('pending', 'running', 'retrying')
    ORDER BY id LIMIT 1
) head
ORDER BY r.key;
