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
        request_id text, concurrency_key text, concurrency_limit integer
    )) WITH ORDINALITY AS i(task_type, queue, priority, payload, max_attempts, retry_delay,
                            timeout, run_at, delay, dedupe_key, request_id, concurrency_key,
                            concurrency_limit, ord)
), inserted AS (
    INSERT INTO tickbase.tasks (id, task_type, queue, priority, payload, max_attempts,
                                retry_delay, timeout, run_at, dedupe_key, request_id,
                                concurrency_key, concurrency_limit)
    SELECT id, task_type, coalesce(queue, 'default'), coalesce(priority, 0),
           coalesce(payload, '{}'::jsonb), coalesce(max_attempts, 1),
           coalesce(retry_delay, 1.0), timeout,
           coalesce(run_at, now() + make_interval(secs => coalesce(delay, 0))),
           dedupe_key, request_id, concurrency_key, concurrency_limit
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
-- times faster than thirteen one-element arrays. The whole new row comes back
-- (id first, as the table defines it): a caller that answers with the task
-- (the gateway) reads nothing after the commit, so a connection lost once the
-- task exists cannot turn into an error that invites a resubmit.
-- No row back = dedupe conflict.
-- %(id)s: an id the caller reserved from tickbase.tasks_id_seq (the gateway
-- records a request under it in the same transaction), else NULL.
INSERT INTO tickbase.tasks (id, task_type, queue, priority, payload, max_attempts, retry_delay,
                            timeout, run_at, dedupe_key, request_id, concurrency_key,
                            concurrency_limit)
VALUES (coalesce(%(id)s::bigint, nextval('tickbase.tasks_id_seq'::regclass)),
        %(task_type)s, %(queue)s, %(priority)s, %(payload)s::jsonb, %(max_attempts)s,
        %(retry_delay)s, %(timeout)s,
        coalesce(%(run_at)s::timestamptz,
                 now() + make_interval(secs => coalesce(%(delay)s::float8, 0))),
        %(dedupe_key)s, %(request_id)s, %(concurrency_key)s, %(concurrency_limit)s)
ON CONFLICT (dedupe_key)
    WHERE dedupe_key IS NOT NULL AND status IN ('pending', 'running', 'retrying')
    DO NOTHING
RETURNING *;

-- task_enqueue_linked --
-- Tasks that stand for something another block records: a schedule's fire
-- (schedule_id, fire_at) or a workflow run's step (workflow_run_id, step, and
-- its dependencies' results as inputs). The caller runs this in its own
-- transaction with what it records about them, so a fire or a workflow's
-- advance commits with its tasks or not at all. Options arrive complete
-- (EnqueueRequest's defaults, resolved in Python). A fire already enqueued by
-- anyone is skipped, never doubled: (schedule_id, fire_at) is unique. An id
-- may come reserved by the caller.
INSERT INTO tickbase.tasks (id, task_type, queue, priority, payload, max_attempts, retry_delay,
                            timeout, run_at, created_at, schedule_id, fire_at,
                            workflow_run_id, step, inputs)
SELECT coalesce(l.id, nextval('tickbase.tasks_id_seq'::regclass)), l.task_type, l.queue,
       l.priority, l.payload, l.max_attempts, l.retry_delay, l.timeout,
       clock_timestamp(), clock_timestamp(), l.schedule_id, l.fire_at,
       l.workflow_run_id, l.step, l.inputs
FROM jsonb_to_recordset(%(tasks)s::jsonb) AS l(
    id bigint, task_type text, queue text, priority smallint, payload jsonb,
    max_attempts integer, retry_delay float8, timeout float8, schedule_id bigint,
    fire_at timestamptz, workflow_run_id bigint, step text, inputs jsonb)
ON CONFLICT (schedule_id, fire_at) WHERE schedule_id IS NOT NULL DO NOTHING
RETURNING id, schedule_id, fire_at, step;

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
-- queue) are released when the statement commits. Limited tasks (rate limit,
-- concurrency key) and queues with a concurrency limit are left to
-- task_claim_limited: this statement reads only the (queue, false) ranges.
-- %(types)s (NULL: any) are the task types the worker has handlers for: a task
-- of another type stays pending for a worker that can run it, never failed
-- (the due tasks of other types in a served queue are filtered, not skipped by
-- an index range: the no-worker-for-type alert names a type that piles up).
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
    SELECT queue FROM (
        SELECT queue FROM waiting_queues WHERE queue IS NOT NULL
        UNION ALL
        SELECT unnest(%(queues)s::text[])
    ) s
    WHERE NOT EXISTS (SELECT 1 FROM tickbase.queue_limits l WHERE l.queue = s.queue)
), picked AS (
    SELECT c.id
    FROM served
    CROSS JOIN LATERAL (
        SELECT id, priority, run_at FROM tickbase.tasks
        WHERE queue = served.queue AND NOT limited AND status IN ('pending', 'retrying')
          AND run_at <= now() AND (%(types)s::text[] IS NULL OR task_type = ANY(%(types)s::text[]))
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
              t.workflow_run_id, t.step, t.inputs, t.request_id
), events AS (
    INSERT INTO tickbase.task_events (task_id, event, node_id)
    SELECT id, 'started', %(node_id)s FROM claimed
), announced AS (
    -- The gateway pushes "running" to whoever requested a task: one NOTIFY
    -- per claim that started requested tasks (none for other claims).
    SELECT pg_notify('tickbase_task_started', string_agg(id::text, ','))
    FROM claimed WHERE request_id IS NOT NULL
    HAVING count(*) > 0
)
SELECT id, task_type, payload, attempts, max_attempts, timeout, workflow_run_id, step, inputs
FROM claimed
WHERE (SELECT count(*) FROM announced) >= 0;  -- evaluates the NOTIFY (once)

-- task_claim_limited_gate --
-- First statement of a limited claim: when some task under a limit is due in
-- the served queues, take the cluster-wide limits lock (held until commit).
-- Limited claims are serialised so that each one counts, in its own fresh
-- snapshot, every start the previous ones made: that is what makes a limit
-- hold across nodes (SKIP LOCKED alone cannot: two claimers would both see
-- one free slot). No row back: nothing to claim, no lock taken.
SELECT pg_advisory_xact_lock(%(lock_key)s)
WHERE EXISTS (
        SELECT 1 FROM tickbase.tasks
        WHERE status IN ('pending', 'retrying') AND limited AND run_at <= now()
          AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s::text[]))
          AND (%(types)s::text[] IS NULL OR task_type = ANY(%(types)s::text[])))
   OR EXISTS (
        SELECT 1 FROM tickbase.queue_limits l
        WHERE (%(queues)s::text[] IS NULL OR l.queue = ANY(%(queues)s::text[]))
          AND EXISTS (SELECT 1 FROM tickbase.tasks t
                      WHERE t.queue = l.queue AND NOT t.limited
                        AND t.status IN ('pending', 'retrying') AND t.run_at <= now()
                        AND (%(types)s::text[] IS NULL OR t.task_type = ANY(%(types)s::text[]))));

-- task_claim_limited --
-- Second statement of a limited claim (under the lock of the gate): claim up to
-- %(limit)s due tasks that some limit governs, never exceeding any:
--   queue concurrency  free = limit - running tasks of the queue (cluster-wide)
--   rate limit         free = max - starts in the last window (rate_limit_starts);
--                      starts are stamped with the clock read under the lock, so
--                      no window of that length ever holds more than max
--   concurrency key    a task may start only while it is among the K oldest
--                      unfinished tasks of its key (so K = 1 runs a key's tasks
--                      one at a time, in enqueue order, a retry keeping its place)
-- Candidates come from three disjoint sources, each fair in its own way: plain
-- tasks of limited queues by priority; rate-limited tasks by type, as many as
-- the type may start; keyed tasks from the head of every key (a loose scan over
-- the keys, so one deep key never starves the others). A candidate is taken
-- only if within every budget that applies to it (ranking by priority within
-- a queue and within a type; conservative: it may leave a slot for the next
-- claim, it never oversteps).
WITH RECURSIVE clock AS (
    SELECT clock_timestamp() AS now
), queue_budget AS (
    SELECT l.queue, l.concurrency - (SELECT count(*) FROM tickbase.tasks r
                                     WHERE r.status = 'running' AND r.queue = l.queue) AS free
    FROM tickbase.queue_limits l
    WHERE %(queues)s::text[] IS NULL OR l.queue = ANY(%(queues)s::text[])
), type_budget AS (
    SELECT l.task_type,
           l.rate_max - (SELECT count(*) FROM tickbase.rate_limit_starts s
                         WHERE s.task_type = l.task_type
                           AND s.started_at > clock.now
                               - make_interval(secs => l.rate_window_seconds)) AS free
    FROM tickbase.task_limits l, clock
    WHERE l.rate_max IS NOT NULL AND (%(types)s::text[] IS NULL OR l.task_type = ANY(%(types)s::text[]))
), keys AS (
    (SELECT concurrency_key AS key FROM tickbase.tasks
     WHERE concurrency_key IS NOT NULL AND status IN ('pending', 'running', 'retrying')
     ORDER BY concurrency_key LIMIT 1)
    UNION ALL
    SELECT (SELECT t.concurrency_key FROM tickbase.tasks t
            WHERE t.concurrency_key > k.key
              AND t.status IN ('pending', 'running', 'retrying')
            ORDER BY t.concurrency_key LIMIT 1)
    FROM keys k
    WHERE k.key IS NOT NULL
), candidates AS (
    SELECT c.id, c.queue, c.task_type, c.rate_limited, c.priority, c.run_at
    FROM queue_budget q CROSS JOIN clock
    CROSS JOIN LATERAL (
        SELECT id, queue, task_type, rate_limited, priority, run_at FROM tickbase.tasks
        WHERE queue = q.queue AND NOT limited AND status IN ('pending', 'retrying')
          AND run_at <= clock.now AND (%(types)s::text[] IS NULL OR task_type = ANY(%(types)s::text[]))
        ORDER BY priority, run_at, id
        LIMIT least(greatest(q.free, 0), %(limit)s)
    ) c
    UNION ALL
    SELECT c.id, c.queue, c.task_type, c.rate_limited, c.priority, c.run_at
    FROM type_budget b CROSS JOIN clock
    CROSS JOIN LATERAL (
        SELECT id, queue, task_type, rate_limited, priority, run_at FROM tickbase.tasks
        WHERE task_type = b.task_type AND status IN ('pending', 'retrying') AND rate_limited
          AND concurrency_key IS NULL AND run_at <= clock.now
          AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s::text[]))
        ORDER BY priority, run_at, id
        LIMIT least(greatest(b.free, 0), %(limit)s)
    ) c
    UNION ALL
    SELECT h.id, h.queue, h.task_type, h.rate_limited, h.priority, h.run_at
    FROM keys CROSS JOIN clock
    CROSS JOIN LATERAL (
        SELECT coalesce(concurrency_limit, 1) AS k FROM tickbase.tasks
        WHERE concurrency_key = keys.key AND status IN ('pending', 'running', 'retrying')
        ORDER BY id LIMIT 1
    ) head
    CROSS JOIN LATERAL (
        SELECT id, queue, task_type, rate_limited, priority, run_at, status FROM tickbase.tasks
        WHERE concurrency_key = keys.key AND status IN ('pending', 'running', 'retrying')
        ORDER BY id LIMIT head.k
    ) h
    WHERE keys.key IS NOT NULL AND h.status IN ('pending', 'retrying') AND h.run_at <= clock.now
      AND (%(queues)s::text[] IS NULL OR h.queue = ANY(%(queues)s::text[]))
      AND (%(types)s::text[] IS NULL OR h.task_type = ANY(%(types)s::text[]))
), ranked AS (
    SELECT c.*,
           row_number() OVER (PARTITION BY c.queue
                              ORDER BY c.priority, c.run_at, c.id) AS queue_rank,
           row_number() OVER (PARTITION BY c.task_type, c.rate_limited
                              ORDER BY c.priority, c.run_at, c.id) AS type_rank
    FROM candidates c
), chosen AS (
    SELECT r.id
    FROM ranked r
    LEFT JOIN queue_budget q ON q.queue = r.queue
    LEFT JOIN type_budget b ON b.task_type = r.task_type AND r.rate_limited
    WHERE (q.queue IS NULL OR r.queue_rank <= q.free)
      AND (b.task_type IS NULL OR r.type_rank <= b.free)
    ORDER BY r.priority, r.run_at, r.id
    LIMIT %(limit)s
), picked AS (
    SELECT t.id FROM tickbase.tasks t JOIN chosen ON chosen.id = t.id
    WHERE t.status IN ('pending', 'retrying')
    FOR UPDATE OF t SKIP LOCKED
), claimed AS (
    UPDATE tickbase.tasks t
    SET status = 'running', attempts = t.attempts + 1, started_at = clock.now,
        node_id = %(node_id)s,
        lease_expires_at = clock.now + make_interval(secs => %(lease_seconds)s)
    FROM picked, clock
    WHERE t.id = picked.id
    RETURNING t.id, t.task_type, t.payload, t.attempts, t.max_attempts, t.timeout,
              t.workflow_run_id, t.step, t.inputs, t.rate_limited, t.request_id
), counted AS (
    INSERT INTO tickbase.rate_limit_starts (task_type, started_at)
    SELECT task_type, clock.now FROM claimed, clock WHERE rate_limited
), events AS (
    INSERT INTO tickbase.task_events (task_id, event, node_id)
    SELECT id, 'started', %(node_id)s FROM claimed
), announced AS (
    SELECT pg_notify('tickbase_task_started', string_agg(id::text, ','))
    FROM claimed WHERE request_id IS NOT NULL
    HAVING count(*) > 0
)
SELECT id, task_type, payload, attempts, max_attempts, timeout, workflow_run_id, step, inputs
FROM claimed
WHERE (SELECT count(*) FROM announced) >= 0;  -- evaluates the NOTIFY (once)

-- rate_limit_starts_prune --
-- Starts older than every window that could still count them.
DELETE FROM tickbase.rate_limit_starts s
WHERE s.started_at < clock_timestamp() - make_interval(secs => coalesce(
    (SELECT l.rate_window_seconds FROM tickbase.task_limits l WHERE l.task_type = s.task_type),
    0));

-- task_next_run_at --
-- When the next not-yet-due task becomes due (the worker sleeps until then).
SELECT min(run_at) FROM tickbase.tasks
WHERE status IN ('pending', 'retrying') AND run_at > now()
  AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s::text[]))
  AND (%(types)s::text[] IS NULL OR task_type = ANY(%(types)s::text[]));

-- task_finish_many --
-- Record the outcome of a batch of executions of one node. The guard
-- (running, same attempt, same node) refuses a late report from a worker whose
-- lease expired and whose task was rescued: it cannot overwrite the newer run.
-- The outcomes and the statuses they lead to: tickbase.outcome_status (migration
-- 0013). %(delays)s: the seconds a retry or a snooze asked for (NULL: backoff).
WITH input AS (
    SELECT * FROM unnest(
        %(ids)s::bigint[], %(attempts)s::integer[], %(outcomes)s::text[],
        %(results)s::text[], %(errors)s::text[], %(delays)s::float8[]
    ) AS i(id, attempt, outcome, result, error, delay)
), finished AS (
    UPDATE tickbase.tasks t
    SET status = tickbase.outcome_status(i.outcome, t.attempts, t.max_attempts,
                                         t.cancel_requested),
        result = i.result::jsonb,
        -- A run that does not end keeps the last error (a snooze is no failure).
        error = CASE WHEN i.outcome IN ('requeued', 'snoozed') THEN t.error
                     ELSE i.error::jsonb END,
        finished_at = CASE
            WHEN tickbase.outcome_status(i.outcome, t.attempts, t.max_attempts,
                                         t.cancel_requested)
                 IN ('succeeded', 'failed', 'cancelled') THEN now() END,
        run_at = CASE
            -- Retry backoff: exponential from retry_delay, +-25% jitter, at most one hour.
            WHEN i.outcome IN ('failed', 'retry') AND i.delay IS NULL THEN now()
                + make_interval(secs =>
                    least(t.retry_delay * power(2, greatest(t.attempts - 1, 0)), 3600)
                    * (0.75 + random() * 0.5))
            WHEN i.outcome IN ('retry', 'snoozed') THEN now() + make_interval(secs => i.delay)
            WHEN i.outcome = 'requeued' THEN now()
            ELSE t.run_at END,
        attempts = CASE WHEN i.outcome IN ('requeued', 'snoozed') THEN t.attempts - 1
                        ELSE t.attempts END,
        lease_expires_at = NULL,
        node_id = CASE WHEN i.outcome IN ('requeued', 'snoozed') THEN NULL ELSE t.node_id END
    FROM input i
    WHERE t.id = i.id AND t.status = 'running' AND t.attempts = i.attempt
      AND t.node_id = %(node_id)s
    RETURNING t.id, t.status, i.outcome, i.error
), events AS (
    -- A handler's own request is named in the log: snoozed, retry_requested.
    INSERT INTO tickbase.task_events (task_id, event, node_id, detail)
    SELECT id,
           CASE WHEN outcome = 'snoozed' AND status = 'pending' THEN 'snoozed'
                WHEN outcome = 'retry' AND status = 'retrying' THEN 'retry_requested'
                ELSE status END,
           %(node_id)s, error::jsonb
    FROM finished
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

-- task_rescue --
-- Run by the cluster leader's housekeeping: running tasks whose node is dead
-- (%(dead_nodes)s, just removed from tickbase.nodes) or whose lease expired
-- (their node hung or lost its connection) go back to the queue with the
-- attempt counted, or fail when out of attempts, or end cancelled when a
-- cancel was requested. A dead node's tasks go first and need not wait for
-- their leases. With %(unless_leader)s, a worker runs it as a fallback: it
-- does nothing while a leader is alive (the leader does this work). Both
-- leases are judged at one instant: %(now)s when given, else the clock.
WITH lost AS (
    SELECT id, node_id = ANY(%(dead_nodes)s::text[]) AS node_dead FROM tickbase.tasks
    WHERE status = 'running'
      AND (node_id = ANY(%(dead_nodes)s::text[])
           OR lease_expires_at < coalesce(%(now)s::timestamptz, now()))
      AND NOT (%(unless_leader)s AND EXISTS (
          SELECT 1 FROM tickbase.leases
          WHERE name = 'leader'
            AND expires_at > coalesce(%(now)s::timestamptz, clock_timestamp())))
    ORDER BY node_id = ANY(%(dead_nodes)s::text[]) DESC, lease_expires_at
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
            'type', CASE WHEN lost.node_dead THEN 'NodeDead' ELSE 'LeaseExpired' END,
            'message', CASE WHEN lost.node_dead
                            THEN 'node ' || t.node_id
                                 || ' stopped heartbeating while running this task'
                            ELSE 'lease expired while running on node '
                                 || coalesce(t.node_id, '?') END
                       || ' (attempt ' || t.attempts || ' of ' || t.max_attempts || ')')
        END
    FROM lost
    WHERE t.id = lost.id
    RETURNING t.id, t.status, t.node_id, t.error
), events AS (
    -- Two events each: 'rescued' by this node, then the one a failure reported
    -- by the worker writes (task_finish_many): retrying or failed with the
    -- error, or cancelled, on the node that ran it. Whoever reads a task's
    -- history, or counts 'failed' events, sees a rescued failure as a failure.
    INSERT INTO tickbase.task_events (task_id, event, node_id, detail)
    SELECT id, 'rescued', %(node_id)s,
           jsonb_build_object('from_node', node_id, 'status', status, 'error', error)
    FROM rescued
    UNION ALL
    SELECT id, status, node_id, CASE WHEN status = 'cancelled' THEN NULL ELSE error END
    FROM rescued
), notified AS (
    SELECT pg_notify('tickbase_task_done', string_agg(id::text, ','))
    FROM (SELECT id, (row_number() OVER ()) / 500 AS chunk FROM rescued
          WHERE status IN ('failed', 'cancelled')) final
    GROUP BY chunk
)
SELECT id, status, node_id, (SELECT count(*) FROM notified) AS notified FROM rescued;

-- task_cancel_many --
-- Cancel tasks: pending/retrying ones end cancelled at once; running ones get
-- cancel_requested (their worker is told via NOTIFY and by its heartbeat).
-- One row per task found, in id order (the order rows are locked in): its
-- status before, and after (NULL: it was final already, and is unchanged).
WITH target AS (
    SELECT id, status FROM tickbase.tasks WHERE id = ANY(%(ids)s::bigint[])
    ORDER BY id FOR UPDATE
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
    SELECT count(pg_notify(CASE WHEN status = 'running' THEN 'tickbase_cancel'
                                ELSE 'tickbase_task_done' END, id::text)) AS n
    FROM changed
)
SELECT target.id, target.status AS previous, changed.status, notified.n AS notified
FROM target LEFT JOIN changed USING (id) CROSS JOIN notified
ORDER BY target.id;

-- task_retry --
-- A final failed/cancelled task cannot change again: retrying it enqueues a
-- copy (new id, attempts reset) and logs the link on both. Several at once:
-- each source gets its copy's id first, so the events pair them.
WITH source AS (
    SELECT *, nextval('tickbase.tasks_id_seq'::regclass) AS copy_id FROM tickbase.tasks
    WHERE id = ANY(%(ids)s::bigint[]) AND status IN ('failed', 'cancelled')
    ORDER BY id
), copy AS (
    INSERT INTO tickbase.tasks (id, task_type, queue, priority, payload, max_attempts,
                                retry_delay, timeout, request_id, concurrency_key,
                                concurrency_limit, dedupe_key)
    SELECT copy_id, task_type, queue, priority, payload, max_attempts, retry_delay, timeout,
           request_id, concurrency_key, concurrency_limit, dedupe_key
    FROM source
    RETURNING id
), events AS (
    INSERT INTO tickbase.task_events (task_id, event, detail)
    SELECT id, 'retried', jsonb_build_object('new_task_id', copy_id) FROM source
    UNION ALL
    SELECT copy_id, 'enqueued', jsonb_build_object('retry_of', id) FROM source
)
SELECT source.id, copy.id AS copy_id FROM source JOIN copy ON copy.id = source.copy_id;

-- task_get --
SELECT * FROM tickbase.tasks WHERE id = %(id)s;

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
