-- Named statements of the queue block. Every state change is one statement
-- guarded by the expected current status; each appends its events to
-- tickbase.task_events in the same statement (a data-modifying CTE), so a
-- transition and its log line commit together, in one round trip.
-- Creating a task is not a transition and logs no event: the row itself, with
-- created_at, is that record (and enqueue is the hottest write of all).

-- task_enqueue_many --
-- Insert a batch (two rows or 10,000) in one statement. The batch travels as
-- one JSON array (one parameter, parsed by the server in C) rather than as
-- thirteen arrays adapted element by element. Ids are drawn from the identity
-- sequence first, so the result maps input positions to ids; a row whose
-- dedupe key is held by an unfinished task gets no id (NULL) here.
WITH input AS (
    SELECT nextval('tickbase.tasks_id_seq'::regclass) AS id, i.*
    FROM ROWS FROM (jsonb_to_recordset(%(batch)s::jsonb) AS (
        task_type text, queue text, priority smallint, payload jsonb, max_attempts integer,
        retry_delay float8, timeout float8, run_at timestamptz, delay float8, dedupe_key text,
        request_id text, concurrency_key text
    )) WITH ORDINALITY AS i(task_type, queue, priority, payload, max_attempts, retry_delay,
                            timeout, run_at, delay, dedupe_key, request_id, concurrency_key,
                            ord)
), inserted AS (
    INSERT INTO tickbase.tasks (id, task_type, queue, priority, payload, max_attempts,
                                retry_delay, timeout, run_at, dedupe_key, request_id,
                                concurrency_key)
    SELECT id, task_type, coalesce(queue, 'default'), coalesce(priority, 0),
           coalesce(payload, '{}'::jsonb), coalesce(max_attempts, 1),
           coalesce(retry_delay, 1.0), timeout,
           coalesce(run_at, now() + make_interval(secs => coalesce(delay, 0))),
           dedupe_key, request_id, concurrency_key
    FROM input
    ON CONFLICT (dedupe_key)
        WHERE dedupe_key IS NOT NULL AND status IN ('pending', 'running', 'retrying')
        DO NOTHING
    RETURNING id
)
SELECT inserted.id
FROM input LEFT JOIN inserted ON inserted.id = input.id
ORDER BY input.ord;

-- task_enqueue_one --
-- task_enqueue_many for a single row: scalar parameters plan and bind several
-- times faster than thirteen one-element arrays. No row back = dedupe conflict.
WITH inserted AS (
    INSERT INTO tickbase.tasks (task_type, queue, priority, payload, max_attempts, retry_delay,
                                timeout, run_at, dedupe_key, request_id, concurrency_key)
    VALUES (%(task_type)s, %(queue)s, %(priority)s, %(payload)s::jsonb, %(max_attempts)s,
            %(retry_delay)s, %(timeout)s,
            coalesce(%(run_at)s::timestamptz,
                     now() + make_interval(secs => coalesce(%(delay)s::float8, 0))),
            %(dedupe_key)s, %(request_id)s, %(concurrency_key)s)
    ON CONFLICT (dedupe_key)
        WHERE dedupe_key IS NOT NULL AND status IN ('pending', 'running', 'retrying')
        DO NOTHING
    RETURNING id
)
SELECT id FROM inserted;

-- task_find_active_by_dedupe_keys --
-- The unfinished tasks holding these dedupe keys.
SELECT id, dedupe_key FROM tickbase.tasks
WHERE dedupe_key = ANY(%(dedupe_keys)s::text[])
  AND status IN ('pending', 'running', 'retrying');

-- task_claim --
-- Claim up to %(limit)s due tasks of the given queues for one worker: priority
-- first, then FIFO by run_at, id. With %(queues)s NULL the worker serves every
-- queue that has waiting tasks, found by a loose scan of the dequeue index (one
-- index descent per queue). Each queue is read through its own range of
-- tasks_dequeue_idx, so a backlog in another queue is never walked; the best
-- rows of all queues are then merged. SKIP LOCKED lets concurrent workers claim
-- disjoint sets without waiting; rows locked but not kept (at most limit per
-- queue) are released when the statement commits.
WITH RECURSIVE waiting_queues AS (
    (SELECT queue FROM tickbase.tasks
     WHERE status IN ('pending', 'retrying') AND %(queues)s::text[] IS NULL
     ORDER BY queue LIMIT 1)
    UNION ALL
    SELECT (SELECT t.queue FROM tickbase.tasks t
            WHERE t.status IN ('pending', 'retrying') AND t.queue > w.queue
            ORDER BY t.queue LIMIT 1)
    FROM waiting_queues w
    WHERE w.queue IS NOT NULL
), served AS (
    SELECT queue FROM waiting_queues WHERE queue IS NOT NULL
    UNION ALL
    SELECT unnest(%(queues)s::text[])
), picked AS (
    SELECT c.id
    FROM served
    CROSS JOIN LATERAL (
        SELECT id, priority, run_at FROM tickbase.tasks
        WHERE queue = served.queue AND status IN ('pending', 'retrying') AND run_at <= now()
        ORDER BY priority, run_at, id
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    ) c
    ORDER BY c.priority, c.run_at, c.id
    LIMIT %(limit)s
), claimed AS (
    UPDATE tickbase.tasks t
    SET status = 'running', attempts = t.attempts + 1, started_at = now(),
        node_id = %(node_id)s,
        lease_expires_at = now() + make_interval(secs => %(lease_seconds)s)
    FROM picked
    WHERE t.id = picked.id
    RETURNING t.id, t.task_type, t.payload, t.attempts, t.max_attempts, t.timeout,
              t.workflow_run_id, t.step, t.inputs
), events AS (
    INSERT INTO tickbase.task_events (task_id, event, node_id)
    SELECT id, 'started', %(node_id)s FROM claimed
)
SELECT id, task_type, payload, attempts, max_attempts, timeout, workflow_run_id, step, inputs
FROM claimed;

-- task_next_run_at --
-- When the next not-yet-due task becomes due (the worker sleeps until then).
SELECT min(run_at) FROM tickbase.tasks
WHERE status IN ('pending', 'retrying') AND run_at > now()
  AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s::text[]));

-- task_finish_many --
-- Record the outcome of a batch of executions of one node. The guard
-- (running, same attempt, same node) refuses a late report from a worker whose
-- lease expired and whose task was rescued: it cannot overwrite the newer run.
-- Outcomes: succeeded | failed (retried while attempts remain) | failed_final |
-- cancelled | requeued (shutdown: back to pending, the attempt not counted).
WITH input AS (
    SELECT * FROM unnest(
        %(ids)s::bigint[], %(attempts)s::integer[], %(outcomes)s::text[],
        %(results)s::text[], %(errors)s::text[]
    ) AS i(id, attempt, outcome, result, error)
), finished AS (
    UPDATE tickbase.tasks t
    SET status = CASE
            WHEN i.outcome = 'failed' AND t.attempts < t.max_attempts
                 AND NOT t.cancel_requested THEN 'retrying'
            WHEN i.outcome = 'failed_final' THEN 'failed'
            WHEN i.outcome = 'requeued' THEN 'pending'
            ELSE i.outcome END,
        result = i.result::jsonb,
        error = CASE WHEN i.outcome = 'requeued' THEN t.error ELSE i.error::jsonb END,
        finished_at = CASE
            WHEN i.outcome IN ('succeeded', 'cancelled', 'failed_final') THEN now()
            WHEN i.outcome = 'failed' AND (t.attempts >= t.max_attempts OR t.cancel_requested)
                THEN now() END,
        -- Retry backoff: exponential from retry_delay, +-25% jitter, at most one hour.
        run_at = CASE
            WHEN i.outcome = 'failed' THEN now() + make_interval(secs =>
                least(t.retry_delay * power(2, greatest(t.attempts - 1, 0)), 3600)
                * (0.75 + random() * 0.5))
            WHEN i.outcome = 'requeued' THEN now()
            ELSE t.run_at END,
        attempts = CASE WHEN i.outcome = 'requeued' THEN t.attempts - 1 ELSE t.attempts END,
        lease_expires_at = NULL,
        node_id = CASE WHEN i.outcome = 'requeued' THEN NULL ELSE t.node_id END
    FROM input i
    WHERE t.id = i.id AND t.status = 'running' AND t.attempts = i.attempt
      AND t.node_id = %(node_id)s
    RETURNING t.id, t.status, i.error
), events AS (
    INSERT INTO tickbase.task_events (task_id, event, node_id, detail)
    SELECT id, status, %(node_id)s, error::jsonb FROM finished
), notified AS (
    -- Whoever awaits a result (handle.result(), the gateway) learns of the end
    -- at once: one NOTIFY per 500 final tasks (payload: their ids), not per row.
    SELECT pg_notify('tickbase_task_done', string_agg(id::text, ','))
    FROM (SELECT id, (row_number() OVER ()) / 500 AS chunk FROM finished
          WHERE status IN ('succeeded', 'failed', 'cancelled')) final
    GROUP BY chunk
)
SELECT (SELECT count(*) FROM finished) AS finished, (SELECT count(*) FROM notified) AS notified;

-- task_heartbeat --
-- Extend the leases of a node's running tasks; report the ones it should stop:
-- cancel requested, or no longer its own (rescued elsewhere after a lost lease).
WITH renewed AS (
    UPDATE tickbase.tasks
    SET lease_expires_at = now() + make_interval(secs => %(lease_seconds)s)
    WHERE id = ANY(%(ids)s::bigint[]) AND status = 'running' AND node_id = %(node_id)s
    RETURNING id, cancel_requested
)
SELECT ids.id, coalesce(renewed.cancel_requested, true) AS stop, renewed.id IS NULL AS lost
FROM unnest(%(ids)s::bigint[]) AS ids(id)
LEFT JOIN renewed ON renewed.id = ids.id
WHERE renewed.id IS NULL OR renewed.cancel_requested;

-- task_rescue_expired --
-- Any node may run this: running tasks whose lease expired (their node died or
-- hung) go back to the queue with the attempt counted, or fail when out of
-- attempts, or end cancelled when a cancel was requested.
WITH expired AS (
    SELECT id FROM tickbase.tasks
    WHERE status = 'running' AND lease_expires_at < coalesce(%(now)s::timestamptz, now())
    ORDER BY lease_expires_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), rescued AS (
    UPDATE tickbase.tasks t
    SET status = CASE WHEN t.cancel_requested THEN 'cancelled'
                      WHEN t.attempts < t.max_attempts THEN 'retrying'
                      ELSE 'failed' END,
        finished_at = CASE WHEN t.cancel_requested OR t.attempts >= t.max_attempts
                           THEN now() END,
        run_at = now(),
        lease_expires_at = NULL,
        error = CASE WHEN t.cancel_requested THEN t.error ELSE jsonb_build_object(
            'type', 'LeaseExpired',
            'message', 'lease expired while running on node ' || coalesce(t.node_id, '?')
                       || ' (attempt ' || t.attempts || ' of ' || t.max_attempts || ')')
        END
    FROM expired
    WHERE t.id = expired.id
    RETURNING t.id, t.status, t.node_id, t.error
), events AS (
    INSERT INTO tickbase.task_events (task_id, event, node_id, detail)
    SELECT id, 'rescued', %(node_id)s,
           jsonb_build_object('from_node', node_id, 'status', status, 'error', error)
    FROM rescued
), notified AS (
    SELECT pg_notify('tickbase_task_done', string_agg(id::text, ','))
    FROM (SELECT id, (row_number() OVER ()) / 500 AS chunk FROM rescued
          WHERE status IN ('failed', 'cancelled')) final
    GROUP BY chunk
)
SELECT id, status, node_id, (SELECT count(*) FROM notified) AS notified FROM rescued;

-- task_cancel --
-- Cancel one task: pending/retrying ends cancelled at once; running gets
-- cancel_requested (its worker is told via NOTIFY and by its heartbeat).
WITH target AS (
    SELECT id, status FROM tickbase.tasks WHERE id = %(id)s FOR UPDATE
), changed AS (
    UPDATE tickbase.tasks t
    SET status = CASE WHEN t.status = 'running' THEN 'running' ELSE 'cancelled' END,
        finished_at = CASE WHEN t.status = 'running' THEN NULL ELSE now() END,
        cancel_requested = true
    FROM target
    WHERE t.id = target.id AND t.status IN ('pending', 'retrying', 'running')
    RETURNING t.id, t.status
), events AS (
    INSERT INTO tickbase.task_events (task_id, event, detail)
    SELECT id, CASE WHEN status = 'running' THEN 'cancel_requested' ELSE 'cancelled' END,
           %(detail)s::jsonb
    FROM changed
), notified AS (
    SELECT pg_notify(CASE WHEN status = 'running' THEN 'tickbase_cancel'
                          ELSE 'tickbase_task_done' END, id::text)
    FROM changed
)
SELECT (SELECT status FROM target) AS previous,
       (SELECT status FROM changed) AS status,
       (SELECT count(*) FROM notified) AS notified;

-- task_retry --
-- A final failed/cancelled task cannot change again: retrying it enqueues a
-- copy (new id, attempts reset) and logs the link on both.
WITH source AS (
    SELECT * FROM tickbase.tasks WHERE id = %(id)s AND status IN ('failed', 'cancelled')
), copy AS (
    INSERT INTO tickbase.tasks (task_type, queue, priority, payload, max_attempts, retry_delay,
                                timeout, request_id, concurrency_key, dedupe_key)
    SELECT task_type, queue, priority, payload, max_attempts, retry_delay, timeout,
           request_id, concurrency_key, dedupe_key
    FROM source
    RETURNING id
), events AS (
    INSERT INTO tickbase.task_events (task_id, event, detail)
    SELECT source.id, 'retried', jsonb_build_object('new_task_id', copy.id) FROM source, copy
    UNION ALL
    SELECT copy.id, 'enqueued', jsonb_build_object('retry_of', source.id) FROM source, copy
)
SELECT id FROM copy;

-- task_get --
SELECT * FROM tickbase.tasks WHERE id = %(id)s;

-- task_get_many --
SELECT * FROM tickbase.tasks WHERE id = ANY(%(ids)s::bigint[]);

-- task_list --
-- Newest first, keyset-paged by id; every filter is optional.
SELECT * FROM tickbase.tasks
WHERE (%(status)s::text IS NULL OR status = %(status)s)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s)
  AND (%(task_type)s::text IS NULL OR task_type = %(task_type)s)
  AND (%(before_id)s::bigint IS NULL OR id < %(before_id)s)
ORDER BY id DESC
LIMIT %(limit)s;

-- task_events_list --
SELECT task_id, at, event, node_id, detail FROM tickbase.task_events
WHERE task_id = %(id)s ORDER BY at, event;

-- task_prune --
-- Delete up to %(limit)s finished tasks older than the cutoff, with their events.
-- Bounded so one pass never holds locks on a large share of the table.
WITH doomed AS (
    SELECT id FROM tickbase.tasks
    WHERE status IN ('succeeded', 'failed', 'cancelled')
      AND finished_at < coalesce(%(now)s::timestamptz, now()) - make_interval(secs => %(older_than_seconds)s)
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), events AS (
    DELETE FROM tickbase.task_events e USING doomed WHERE e.task_id = doomed.id
)
DELETE FROM tickbase.tasks t USING doomed WHERE t.id = doomed.id;

-- task_count_unfinished --
SELECT count(*) FROM tickbase.tasks WHERE status IN ('pending', 'running', 'retrying');

-- task_count_by_status --
SELECT queue, status, count(*) AS n FROM tickbase.tasks GROUP BY queue, status ORDER BY queue, status;
