-- Named statements of the gateway block.

-- request_submit --
-- A user's request that becomes a task, in one statement: the ledger row and
-- the task are written together, or (requestId already used by this user)
-- neither, and the existing task is returned instead, with the action its
-- request was recorded with (the caller compares the task with the request
-- and refuses a different one under the same id): a re-sent request never
-- runs twice.
WITH new_id AS (
    SELECT nextval('tickbase.tasks_id_seq'::regclass) AS id
), ledger AS (
    INSERT INTO tickbase.gateway_requests (user_id, request_id, action, task_id)
    SELECT %(user_id)s, %(request_id)s, %(action)s, id FROM new_id
    ON CONFLICT (user_id, request_id) DO NOTHING
    RETURNING task_id
), task AS (
    INSERT INTO tickbase.tasks (id, task_type, queue, priority, payload, max_attempts,
                                retry_delay, timeout, run_at, dedupe_key, request_id)
    SELECT ledger.task_id, %(task_type)s, %(queue)s, %(priority)s, %(payload)s::jsonb,
           %(max_attempts)s, %(retry_delay)s, %(timeout)s,
           coalesce(%(run_at)s::timestamptz,
                    now() + make_interval(secs => coalesce(%(delay)s::float8, 0))),
           %(dedupe_key)s, %(request_id)s
    FROM ledger
    RETURNING *
)
-- The whole task row comes back with the write, so nothing is read after the
-- commit (a read that a lost connection could fail once the task exists).
-- No row back: the requestId was taken by a request committed after this
-- statement's snapshot; the caller reads it afresh. A dedupeKey held by an
-- unfinished task fails the whole statement (tasks_dedupe_key_active_idx):
-- neither row is written.
SELECT task.*, true AS created, %(action)s::text AS request_action FROM task
UNION ALL
SELECT t.*, false AS created, r.action AS request_action
FROM tickbase.gateway_requests r JOIN tickbase.tasks t ON t.id = r.task_id
WHERE NOT EXISTS (SELECT FROM task)
  AND r.user_id = %(user_id)s AND r.request_id = %(request_id)s;

-- request_reserve --
-- Claim a user's requestId for an operation that makes its task elsewhere (a
-- schedule's manual fire), with the task's id reserved now; the caller makes
-- the task under that id in the same transaction. No row back: this user's
-- requestId is taken (by an earlier request, or one committing meanwhile: the
-- insert waits for it), and the caller answers with that request instead.
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
