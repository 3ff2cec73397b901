-- Named statements of the gateway block.

-- request_reserve --
-- Claim a user's requestId, with its task's id reserved now; the caller makes
-- the task under that id (through the queue, or a schedule's manual fire) in
-- the same transaction, so the ledger row and the task commit together. No
-- row back: this user's requestId is taken (by an earlier request, or one
-- committing meanwhile: the insert waits for it), and the caller answers with
-- that request instead.
INSERT INTO tickbase.gateway_requests (user_id, request_id, action, task_id)
VALUES (%(user_id)s, %(request_id)s, %(action)s, nextval('tickbase.tasks_id_seq'::regclass))
ON CONFLICT (user_id, request_id) DO NOTHING
RETURNING task_id;

-- request_get --
-- A user's request with the state of its task.
SELECT r.request_id, r.action, r.task_id, t.status, t.result, t.error, t.fire_at
FROM tickbase.gateway_requests r
JOIN tickbase.tasks t ON t.id = r.task_id
WHERE r.user_id = %(user_id)s AND r.request_id = %(request_id)s;

-- tokens_revoked_among --
-- Which of these token ids are revoked (or gone): a revocation NOTIFY missed
-- while the listener was down is caught by this.
SELECT id FROM unnest(%(ids)s::bigint[]) AS watched(id)
WHERE NOT EXISTS (
    SELECT FROM tickbase.api_tokens t WHERE t.id = watched.id AND t.revoked_at IS NULL
);

-- request_states --
-- The state of several tasks (fan-out of a NOTIFY to waiting requests).
SELECT id, status, result, error FROM tickbase.tasks WHERE id = ANY(%(ids)s::bigint[]);

-- feed_high_water --
-- Where the dashboards' live task list starts: the newest task id now.
SELECT coalesce(max(id), 0) FROM tickbase.tasks;

-- feed_task_changes --
-- The dashboards' live task list, read once per gateway process per beat
-- however many dashboards watch, every part index-ranged: tasks created
-- since the high-water mark (the primary key), the running set (the partial
-- lease index), and the tasks the process was told about or last saw
-- running (ended, retried, cancelled).
(SELECT id, task_type, queue, status, priority, attempts, max_attempts, run_at, created_at,
        started_at, finished_at, node_id, workflow_run_id, step, schedule_id
 FROM tickbase.tasks WHERE id > %(after_id)s ORDER BY id LIMIT %(limit)s)
UNION
(SELECT id, task_type, queue, status, priority, attempts, max_attempts, run_at, created_at,
        started_at, finished_at, node_id, workflow_run_id, step, schedule_id
 FROM tickbase.tasks WHERE status = 'running' AND lease_expires_at IS NOT NULL
 LIMIT %(limit)s)
UNION
(SELECT id, task_type, queue, status, priority, attempts, max_attempts, run_at, created_at,
        started_at, finished_at, node_id, workflow_run_id, step, schedule_id
 FROM tickbase.tasks WHERE id = ANY(%(ids)s::bigint[]))
ORDER BY id;

-- feed_throughput --
-- Tasks finished per minute over the last hour, by outcome, for the
-- overview's chart. Bounded: the newest 50,000 tasks by id (a backwards
-- walk of the primary key), so it never scans the table; past 50,000 tasks
-- an hour the chart covers the newest ones (the reply says how many rows).
SELECT date_trunc('minute', finished_at) AS minute,
       count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
       count(*) FILTER (WHERE status = 'failed') AS failed,
       count(*) FILTER (WHERE status = 'cancelled') AS cancelled
FROM (SELECT finished_at, status FROM tickbase.tasks ORDER BY id DESC LIMIT 50000) recent
WHERE finished_at > clock_timestamp() - interval '60 minutes'
GROUP BY 1 ORDER BY 1;
