-- Named statements of the workflows block.

-- workflow_upsert --
-- Store a definition (the latest one wins); its id.
INSERT INTO tickbase.workflows (name, mode, on_failure, max_parallel, steps)
VALUES (%(name)s, %(mode)s, %(on_failure)s, %(max_parallel)s, %(steps)s::jsonb)
ON CONFLICT (name) DO UPDATE
SET mode = excluded.mode, on_failure = excluded.on_failure,
    max_parallel = excluded.max_parallel, steps = excluded.steps, updated_at = now()
RETURNING id;

-- workflow_get --
SELECT id, name, mode, on_failure, max_parallel, steps, created_at, updated_at
FROM tickbase.workflows WHERE name = %(name)s;

-- workflow_list --
SELECT id, name, mode, on_failure, max_parallel, steps, created_at, updated_at
FROM tickbase.workflows ORDER BY name;

-- workflow_delete --
-- Remove a definition; its runs keep their history (and their workflow name).
DELETE FROM tickbase.workflows WHERE name = %(name)s RETURNING id;

-- workflow_run_create --
-- A run and its steps, all waiting; advance() then enqueues the first ones.
WITH run AS (
    INSERT INTO tickbase.workflow_runs (workflow_id, workflow_name, mode, on_failure,
                                        max_parallel, schedule_id, fire_at, started_by_task)
    SELECT id, name, mode, on_failure, max_parallel, %(schedule_id)s, %(fire_at)s,
           %(started_by_task)s
    FROM tickbase.workflows WHERE name = %(name)s
    ON CONFLICT (started_by_task) WHERE started_by_task IS NOT NULL DO NOTHING
    RETURNING id, workflow_id
), steps AS (
    INSERT INTO tickbase.workflow_steps (run_id, step, position, task_type, payload, options,
                                         after, deps_left)
    SELECT run.id, s.value->>'name', s.ordinality::integer - 1, s.value->>'task_type',
           coalesce(s.value->'payload', '{}'::jsonb), coalesce(s.value->'options', '{}'::jsonb),
           ARRAY(SELECT jsonb_array_elements_text(coalesce(s.value->'after', '[]'::jsonb))),
           jsonb_array_length(coalesce(s.value->'after', '[]'::jsonb))
    FROM run, tickbase.workflows w, jsonb_array_elements(w.steps) WITH ORDINALITY AS s
    WHERE w.id = run.workflow_id
)
SELECT id FROM run;

-- workflow_run_by_task --
-- The run a task already started (its retry must not start another).
SELECT id FROM tickbase.workflow_runs WHERE started_by_task = %(task_id)s;

-- workflow_run_lock --
-- Serialise every change to one run (step finishes arrive from many workers).
SELECT id, mode, on_failure, max_parallel, status FROM tickbase.workflow_runs
WHERE id = %(id)s FOR UPDATE;

-- workflow_run_steps --
-- A run's steps with the state of their tasks.
SELECT s.step, s.position, s.task_type, s.payload, s.options, s.after, s.status, s.task_id,
       t.status AS task_status, t.result, t.attempts, t.started_at, t.finished_at
FROM tickbase.workflow_steps s
LEFT JOIN tickbase.tasks t ON t.id = s.task_id
WHERE s.run_id = %(id)s
ORDER BY s.position;

-- workflow_steps_sync --
-- Steps whose task has ended take its final status.
UPDATE tickbase.workflow_steps s
SET status = t.status
FROM tickbase.tasks t
WHERE s.run_id = %(id)s AND s.status = 'enqueued' AND t.id = s.task_id
  AND t.status IN ('succeeded', 'failed', 'cancelled')
RETURNING s.step, s.status;

-- workflow_steps_release --
-- Steps that waited on newly succeeded steps have that many fewer to wait on.
UPDATE tickbase.workflow_steps s
SET deps_left = s.deps_left
    - (SELECT count(*) FROM unnest(s.after) AS a(name) WHERE a.name = ANY(%(done)s::text[]))
WHERE s.run_id = %(id)s AND s.status = 'waiting' AND s.after && %(done)s::text[];

-- workflow_steps_ready --
-- Waiting steps with nothing left to wait on, in run order, with the results
-- of their dependencies (their inputs).
SELECT s.step, s.task_type, s.payload, s.options,
       (SELECT coalesce(jsonb_object_agg(d.step, t.result), '{}'::jsonb)
        FROM tickbase.workflow_steps d JOIN tickbase.tasks t ON t.id = d.task_id
        WHERE d.run_id = s.run_id AND d.step = ANY(s.after)) AS inputs
FROM tickbase.workflow_steps s
WHERE s.run_id = %(id)s AND s.status = 'waiting' AND s.deps_left = 0
ORDER BY s.position
LIMIT %(limit)s;

-- workflow_run_counts --
SELECT count(*) FILTER (WHERE status = 'enqueued') AS active,
       count(*) FILTER (WHERE status = 'waiting') AS waiting,
       count(*) FILTER (WHERE status <> 'succeeded') AS not_succeeded,
       count(*) FILTER (WHERE status IN ('failed', 'cancelled')) AS failed,
       count(*) AS total
FROM tickbase.workflow_steps WHERE run_id = %(id)s;

-- workflow_steps_set --
-- Record step states (and their task ids) decided by advance().
UPDATE tickbase.workflow_steps s
SET status = c.status, task_id = coalesce(c.task_id, s.task_id)
FROM jsonb_to_recordset(%(changes)s::jsonb) AS c(step text, status text, task_id bigint)
WHERE s.run_id = %(id)s AND s.step = c.step;

-- workflow_run_finish --
UPDATE tickbase.workflow_runs
SET status = %(status)s, finished_at = now()
WHERE id = %(id)s AND status = 'running';

-- workflow_run_unfinished_tasks --
-- The run's step tasks that have not ended (to cancel when the run stops).
SELECT id FROM tickbase.tasks
WHERE workflow_run_id = %(id)s AND status IN ('pending', 'retrying', 'running')
ORDER BY id;

-- workflow_run_get --
SELECT id, workflow_id, workflow_name, mode, on_failure, max_parallel, status, schedule_id,
       fire_at, started_by_task, created_at, finished_at
FROM tickbase.workflow_runs WHERE id = %(id)s;

-- workflow_runs_list --
SELECT id, workflow_id, workflow_name, mode, on_failure, max_parallel, status, schedule_id,
       fire_at, started_by_task, created_at, finished_at
FROM tickbase.workflow_runs
WHERE (%(name)s::text IS NULL OR workflow_name = %(name)s)
  AND (%(status)s::text IS NULL OR status = %(status)s)
  AND (%(before_id)s::bigint IS NULL OR id < %(before_id)s::bigint)
ORDER BY id DESC LIMIT %(limit)s;

-- workflow_runs_stale --
-- Runs with a step whose task ended without the run advancing (a step task
-- cancelled or rescued outside a worker's report): reconcile them.
SELECT DISTINCT s.run_id
FROM tickbase.workflow_steps s
JOIN tickbase.tasks t ON t.id = s.task_id
WHERE s.status = 'enqueued' AND t.status IN ('succeeded', 'failed', 'cancelled')
LIMIT %(limit)s;
