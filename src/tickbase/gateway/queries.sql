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
