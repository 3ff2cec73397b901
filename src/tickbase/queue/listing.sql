-- Named statements of the queue block: which tasks a filter means (listings,
-- bulk actions) and the record of bulk actions. See tickbase.queue.filters.

-- task_match_ids --
-- Ids of the tasks matching a filter, newest first, keyset-paged (before_id)
-- and bounded (up_to_id: what a bulk action's dry run saw). A walk of the
-- primary key backwards: every filter is applied as it walks, so the first
-- page of a broad filter costs a few index pages whatever the table's size.
-- JSON conditions are containment tests on parameters, never SQL text.
SELECT id FROM tickbase.tasks
WHERE (%(status)s::text IS NULL OR status = %(status)s)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s)
  AND (%(task_type)s::text IS NULL OR task_type = %(task_type)s)
  AND (%(node_id)s::text IS NULL OR node_id = %(node_id)s)
  AND (%(created_after)s::timestamptz IS NULL OR created_at >= %(created_after)s)
  AND (%(created_before)s::timestamptz IS NULL OR created_at < %(created_before)s)
  AND (%(payload_contains)s::jsonb IS NULL OR payload @> %(payload_contains)s::jsonb)
  AND (%(result_contains)s::jsonb IS NULL OR result @> %(result_contains)s::jsonb)
  AND (%(before_id)s::bigint IS NULL OR id < %(before_id)s)
  AND (%(up_to_id)s::bigint IS NULL OR id <= %(up_to_id)s)
ORDER BY id DESC
LIMIT %(limit)s;

-- listing_timeout --
-- Bound one listing's search (this transaction only), in milliseconds.
SELECT set_config('statement_timeout', %(ms)s, true);

-- task_get_many --
-- These tasks, newest first.
SELECT * FROM tickbase.tasks WHERE id = ANY(%(ids)s::bigint[]) ORDER BY id DESC;

-- bulk_action_record --
-- The audit row of one bulk action (in the transaction that acted).
INSERT INTO tickbase.task_bulk_actions
    (actor_token_id, actor, action, filter, up_to_id, matched, changed)
VALUES (%(actor_token_id)s, %(actor)s, %(action)s, %(filter)s::jsonb, %(up_to_id)s,
        %(matched)s, %(changed)s)
RETURNING id, at;

-- bulk_actions_list --
-- Bulk actions newest first, keyset-paged by id.
SELECT id, at, actor_token_id, actor, action, filter, up_to_id, matched, changed
FROM tickbase.task_bulk_actions
WHERE (%(before_id)s::bigint IS NULL OR id < %(before_id)s)
ORDER BY id DESC
LIMIT %(limit)s;
