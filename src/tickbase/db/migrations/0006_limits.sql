-- tickbase schema, version 6: limits enforced across the whole cluster.
--
-- Three limits, all decided in the database at claim time:
--   queue concurrency   at most N tasks of a queue running in the cluster
--   rate limit          at most N starts of a task type in any window of W seconds
--   concurrency key     at most K running tasks per key (K = 1: serial per key,
--                       in enqueue order)
-- Tasks under a rate limit or a key ("limited" tasks) are claimed through a
-- separate, serialised path (task_claim_limited); every other task keeps the
-- plain SKIP LOCKED claim, which never sees them (see tasks_dequeue_idx).

-- Per task type limits, written by the apps that define the task types
-- (@app.task(rate_limit=..., concurrency_key=...)) so that every producer
-- (CLI, scheduler, workflows, other services) is held to them.
CREATE TABLE tickbase.task_limits (
    task_type           text        NOT NULL,
    rate_max            integer,
    rate_window_seconds double precision,
    -- A template like '{symbol}' formatted from the payload when a task is
    -- enqueued without an explicit key.
    concurrency_key     text,
    concurrency_limit   integer     NOT NULL DEFAULT 1,
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT task_limits_pkey PRIMARY KEY (task_type),
    CONSTRAINT task_limits_rate_valid CHECK (
        (rate_max IS NULL) = (rate_window_seconds IS NULL)
        AND (rate_max IS NULL OR (rate_max >= 1 AND rate_window_seconds > 0))),
    CONSTRAINT task_limits_concurrency_limit_valid CHECK (concurrency_limit >= 1)
);

-- At most `concurrency` running tasks of the queue across the cluster.
CREATE TABLE tickbase.queue_limits (
    queue        text        NOT NULL,
    concurrency  integer     NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT queue_limits_pkey PRIMARY KEY (queue),
    CONSTRAINT queue_limits_concurrency_valid CHECK (concurrency >= 1)
);

-- The starts that count against rate limits: one row per start (a retry is a
-- new start). Old rows are pruned by the leader's housekeeping.
CREATE TABLE tickbase.rate_limit_starts (
    task_type   text        NOT NULL,
    started_at  timestamptz NOT NULL
);
CREATE INDEX rate_limit_starts_idx ON tickbase.rate_limit_starts (task_type, started_at);

ALTER TABLE tickbase.tasks
    ADD COLUMN rate_limited boolean NOT NULL DEFAULT false,
    ADD COLUMN concurrency_limit integer,
    ADD COLUMN limited boolean GENERATED ALWAYS AS (
        concurrency_key IS NOT NULL OR rate_limited) STORED,
    ADD CONSTRAINT tasks_concurrency_limit_valid CHECK (
        concurrency_limit IS NULL OR concurrency_limit >= 1);

-- The plain claim reads the (queue, false) range of this index, the limited
-- claim the (queue, true) range: one index for both, so an enqueue pays for
-- one index as before, and limited tasks waiting at the head of a queue are
-- never walked by the plain claim.
DROP INDEX tickbase.tasks_dequeue_idx;
CREATE INDEX tasks_dequeue_idx ON tickbase.tasks (queue, limited, priority, run_at, id)
    WHERE status IN ('pending', 'retrying');
-- Rate-limited tasks without a key, per type (only those rows are indexed).
CREATE INDEX tasks_rate_limited_idx ON tickbase.tasks (task_type, priority, run_at, id)
    WHERE status IN ('pending', 'retrying') AND rate_limited AND concurrency_key IS NULL;
-- Each key's unfinished tasks in enqueue order: its head is the oldest K.
CREATE INDEX tasks_concurrency_key_idx ON tickbase.tasks (concurrency_key, id)
    WHERE concurrency_key IS NOT NULL AND status IN ('pending', 'running', 'retrying');

-- '{symbol}:{interval}' with payload {"symbol": "BTCUSDT", "interval": "1h"}
-- gives 'BTCUSDT:1h'. A missing field formats as '' (the tasks still share a
-- key, so the limit holds rather than silently lifting).
CREATE FUNCTION tickbase.format_concurrency_key(template text, payload jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(string_agg(
        CASE WHEN part.n % 2 = 0 THEN coalesce(payload->>part.text, '') ELSE part.text END,
        '' ORDER BY part.n), '')
    FROM regexp_split_to_table(regexp_replace(template, '\{([^{}]*)\}', E'\x01\\1\x01', 'g'),
                               E'\x01') WITH ORDINALITY AS part(text, n)
$$;

-- After each insert statement: wake the workers of the queues that got tasks
-- (one NOTIFY per statement), and put the new tasks of limited task types
-- under their limits. Doing it here holds every producer to the limits; the
-- update touches only tasks of limited types (a hash join with a small table)
-- and happens before the inserting transaction commits, so no claim ever sees
-- such a task unlimited.
CREATE FUNCTION tickbase.tasks_after_insert_v2() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    queues text;
BEGIN
    IF EXISTS (SELECT 1 FROM tickbase.task_limits) THEN
        UPDATE tickbase.tasks t
        SET rate_limited = l.rate_max IS NOT NULL,
            concurrency_key = coalesce(t.concurrency_key, tickbase.format_concurrency_key(
                l.concurrency_key, t.payload)),
            concurrency_limit = coalesce(t.concurrency_limit, l.concurrency_limit)
        FROM new_tasks n JOIN tickbase.task_limits l ON l.task_type = n.task_type
        WHERE t.id = n.id;
    END IF;
    SELECT string_agg(DISTINCT queue, ',') INTO queues FROM new_tasks;
    IF queues IS NOT NULL THEN
        PERFORM pg_notify('tickbase_enqueued', queues);
    END IF;
    RETURN NULL;
END;
$$;

DROP TRIGGER tasks_notify_enqueued ON tickbase.tasks;
DROP FUNCTION tickbase.tasks_notify_enqueued_v1();
CREATE TRIGGER tasks_after_insert
    AFTER INSERT ON tickbase.tasks
    REFERENCING NEW TABLE AS new_tasks
    FOR EACH STATEMENT EXECUTE FUNCTION tickbase.tasks_after_insert_v2();
