-- lease_acquire --
-- Take the lease when it is free or expired, or renew it when we hold it.
-- Taking it from another holder bumps the token; renewing keeps it. No row
-- back: someone else holds a live lease. %(now)s: the instant to act at (NULL:
-- the database clock; tests pass a later one instead of sleeping).
INSERT INTO tickbase.leases AS l (name, holder, token, acquired_at, expires_at)
VALUES (%(name)s, %(holder)s, 1, coalesce(%(now)s::timestamptz, clock_timestamp()),
        coalesce(%(now)s::timestamptz, clock_timestamp()) + make_interval(secs => %(ttl)s))
ON CONFLICT (name) DO UPDATE
SET holder = excluded.holder,
    expires_at = excluded.expires_at,
    token = CASE WHEN l.holder = excluded.holder
                      AND l.expires_at > coalesce(%(now)s::timestamptz, clock_timestamp())
                 THEN l.token ELSE l.token + 1 END,
    acquired_at = CASE WHEN l.holder = excluded.holder
                            AND l.expires_at > coalesce(%(now)s::timestamptz, clock_timestamp())
                       THEN l.acquired_at ELSE excluded.acquired_at END
WHERE l.holder = excluded.holder
   OR l.expires_at <= coalesce(%(now)s::timestamptz, clock_timestamp())
RETURNING token, expires_at;

-- lease_expires_in --
-- Seconds until the current holder's lease runs out (a standby sleeps that long).
SELECT greatest(
    extract(epoch FROM expires_at - coalesce(%(now)s::timestamptz, clock_timestamp())), 0)::float8
FROM tickbase.leases WHERE name = %(name)s;

-- lease_release --
-- Give the lease up at once (clean shutdown) and tell the standbys, so a
-- successor need not wait for the expiry.
WITH released AS (
    UPDATE tickbase.leases SET expires_at = clock_timestamp()
    WHERE name = %(name)s AND holder = %(holder)s AND token = %(token)s
    RETURNING name
)
SELECT pg_notify('tickbase_lease_released', name) FROM released;

-- lease_get --
SELECT name, holder, token, acquired_at, expires_at,
       expires_at > coalesce(%(now)s::timestamptz, clock_timestamp()) AS live
FROM tickbase.leases WHERE name = %(name)s;

-- node_register --
-- Register (or re-register after a lost connection) this process.
INSERT INTO tickbase.nodes (node_id, host, pid, roles, queues, version, heartbeat_interval,
                            task_types)
VALUES (%(node_id)s, %(host)s, %(pid)s, %(roles)s, %(queues)s, %(version)s, %(interval)s,
        %(task_types)s::jsonb)
ON CONFLICT (node_id) DO UPDATE
SET roles = excluded.roles, queues = excluded.queues, heartbeat_at = clock_timestamp(),
    heartbeat_interval = excluded.heartbeat_interval, task_types = excluded.task_types;

-- node_heartbeat --
-- Say we are alive, with our metrics. No row back: we were declared dead
-- (and removed) meanwhile; the caller registers again.
UPDATE tickbase.nodes
SET heartbeat_at = clock_timestamp(), metrics = %(metrics)s::jsonb
WHERE node_id = %(node_id)s
RETURNING node_id;

-- node_deregister --
DELETE FROM tickbase.nodes WHERE node_id = %(node_id)s;

-- node_list --
-- Nodes with their liveness (dead = silent for three of their intervals).
SELECT node_id, host, pid, roles, queues, version, started_at, heartbeat_at,
       heartbeat_interval, metrics, task_types,
       extract(epoch FROM clock_timestamp() - heartbeat_at)::float8 AS heartbeat_age_seconds,
       heartbeat_at > clock_timestamp() - make_interval(secs => 3 * heartbeat_interval) AS alive,
       EXISTS (SELECT 1 FROM tickbase.leases l
               WHERE l.name = 'leader' AND l.holder = n.node_id
                 AND l.expires_at > clock_timestamp()) AS leader
FROM tickbase.nodes n
ORDER BY started_at, node_id;

-- node_reap_dead --
-- Remove the nodes silent for three of their intervals. The leader rescues
-- their running tasks in the same transaction (task_rescue), without waiting
-- for the tasks' leases.
DELETE FROM tickbase.nodes
WHERE heartbeat_at < clock_timestamp() - make_interval(secs => 3 * heartbeat_interval)
RETURNING node_id;

-- lease_hold --
-- First statement of a leader's fenced transaction: still the holder, with
-- this token, unexpired? The row stays share-locked until commit, so no one
-- can take the lease over while the fenced work runs; no row back means
-- deposed: the caller writes nothing and stands down. %(now)s as in lease_acquire.
-- A leader paused inside the transaction (SIGSTOP, a VM freeze) would hold
-- that lock, and so block every successor's lease_acquire, for as long as it
-- is paused: %(idle_ms)s ends its session once it has been idle in the
-- transaction that long, which releases the lock (its work rolls back).
SELECT token, set_config('idle_in_transaction_session_timeout', %(idle_ms)s::text, true)
FROM tickbase.leases
WHERE name = %(lease)s AND holder = %(holder)s AND token = %(token)s
  AND expires_at > coalesce(%(now)s::timestamptz, clock_timestamp())
FOR SHARE;

-- stats_tasks --
-- Tasks by queue and status (the dashboard's and /metrics' first question),
-- counted exactly: for a table of at most STATS_EXACT_ROWS rows.
SELECT queue, status, count(*) AS n FROM tickbase.tasks GROUP BY queue, status ORDER BY queue, status;

-- stats_tasks_rows --
-- The planner's estimate of the table's rows (0 before its first ANALYZE).
SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = 'tickbase.tasks'::regclass;

-- stats_tasks_active --
-- Waiting and running tasks by queue, counted exactly through the partial
-- indexes that hold only them (the dequeue and lease indexes).
SELECT queue, status, count(*) AS n FROM tickbase.tasks
WHERE status IN ('pending', 'retrying') GROUP BY queue, status
UNION ALL
SELECT queue, status, count(*) FROM tickbase.tasks
WHERE status = 'running' AND lease_expires_at IS NOT NULL GROUP BY queue, status;

-- stats_tasks_final_sampled --
-- Finished tasks by queue and status, estimated from a sample of the
-- table's pages (%(percent)s percent of them), for tables too large to count
-- on every scrape: the counts are scaled up and rounded.
SELECT queue, status, round(count(*) * 100.0 / %(percent)s)::bigint AS n
FROM tickbase.tasks TABLESAMPLE SYSTEM (%(percent)s)
WHERE status IN ('succeeded', 'failed', 'cancelled')
GROUP BY queue, status;

-- stats_activity --
-- Throughput, failures, backlog and lags, on the database clock.
SELECT
    -- Among the newest 50,000 tasks (a backwards walk of the primary key, as
    -- in stats_timings): finishing tasks older than those are not counted.
    (SELECT count(*) FROM (SELECT finished_at FROM tickbase.tasks ORDER BY id DESC LIMIT 50000) r
     WHERE finished_at > clock_timestamp() - interval '60 seconds') AS finished_last_minute,
    -- now(), not clock_timestamp(): a stable bound is an index condition on
    -- tasks_failed_finished_idx (a volatile one filters every failed task).
    (SELECT count(*) FROM tickbase.tasks
     WHERE status = 'failed' AND finished_at > now() - interval '1 hour')
        AS failed_last_hour,
    (SELECT count(*) FROM tickbase.tasks
     WHERE status IN ('pending', 'retrying') AND run_at <= clock_timestamp()) AS backlog,
    (SELECT extract(epoch FROM clock_timestamp() - min(run_at)) FROM tickbase.tasks
     WHERE status IN ('pending', 'retrying') AND run_at <= clock_timestamp())
        AS oldest_due_seconds,
    (SELECT extract(epoch FROM clock_timestamp() - min(next_fire_at)) FROM tickbase.schedules
     WHERE enabled AND NOT paused AND removed_at IS NULL AND kind <> 'manual'
       AND next_fire_at <= clock_timestamp()) AS schedule_lag_seconds,
    (SELECT count(*) FROM tickbase.nodes
     WHERE heartbeat_at > clock_timestamp() - make_interval(secs => 3 * heartbeat_interval))
        AS nodes_alive,
    (SELECT holder FROM tickbase.leases
     WHERE name = 'leader' AND expires_at > clock_timestamp()) AS leader;

-- tasks_unserved --
-- Due waiting tasks that no live worker can claim (no live node handles the
-- type, or none serves the task's queue), by type and queue. Counted per
-- (type, queue) first, so the nodes are consulted once per pair, not per task.
WITH waiting AS (
    SELECT task_type, queue, count(*) AS n FROM tickbase.tasks
    WHERE status IN ('pending', 'retrying') AND run_at <= clock_timestamp()
    GROUP BY task_type, queue
)
SELECT w.task_type, w.queue, w.n FROM waiting w
WHERE NOT EXISTS (
    SELECT 1 FROM tickbase.nodes n
    WHERE n.heartbeat_at > clock_timestamp() - make_interval(secs => 3 * n.heartbeat_interval)
      AND n.task_types ? w.task_type AND (n.queues IS NULL OR w.queue = ANY(n.queues)))
ORDER BY w.task_type, w.queue;

-- stats_timings --
-- Enqueue-to-start latency (from when the task was due) and run duration, in
-- seconds, of recent tasks started in the last five minutes. Bounded: the
-- newest 10,000 tasks by id (a backwards walk of the primary key), so a scrape
-- never scans the table.
SELECT extract(epoch FROM started_at - greatest(run_at, created_at))::float8 AS latency,
       extract(epoch FROM finished_at - started_at)::float8 AS duration
FROM (SELECT started_at, run_at, created_at, finished_at FROM tickbase.tasks
      ORDER BY id DESC LIMIT 10000) recent
WHERE started_at > clock_timestamp() - interval '5 minutes';

-- task_type_served --
-- Whether a live node's worker handles this task type, and whether one that
-- does serves this queue (a waiting task needs both to be claimed).
SELECT coalesce(bool_or(true), false) AS handled,
       coalesce(bool_or(n.queues IS NULL OR %(queue)s = ANY(n.queues)), false) AS served
FROM tickbase.nodes n
WHERE n.heartbeat_at > clock_timestamp() - make_interval(secs => 3 * n.heartbeat_interval)
  AND n.task_types ? %(task_type)s;

-- known_task_types --
-- The task types a producer may enqueue: those live nodes' workers handle,
-- with the enqueue defaults their handlers declare (the newest node's win),
-- and those stored schedules fire (with the schedule's queue). handled says
-- whether a live worker runs the type now.
WITH live AS (
    SELECT DISTINCT ON (t.key) t.key AS task_type, t.value AS defaults
    FROM tickbase.nodes n, jsonb_each(n.task_types) t
    WHERE n.heartbeat_at > clock_timestamp() - make_interval(secs => 3 * n.heartbeat_interval)
    ORDER BY t.key, n.started_at DESC
)
SELECT task_type, defaults, true AS handled FROM live
UNION ALL
SELECT DISTINCT ON (s.task_type) s.task_type, jsonb_build_object('queue', s.queue), false
FROM tickbase.schedules s
WHERE s.removed_at IS NULL AND NOT EXISTS (SELECT 1 FROM live WHERE live.task_type = s.task_type)
ORDER BY 1;

-- lease_acquire_many --
-- lease_acquire for many names in one statement (the real-time pipeline's symbol
-- leases): each is taken when free or expired, renewed when ours. Rows back: the
-- names held afterwards, with their tokens. %(names)s sorted and unique: two nodes
-- then lock the same rows in the same order and cannot deadlock.
INSERT INTO tickbase.leases AS l (name, holder, token, acquired_at, expires_at)
SELECT n, %(holder)s, 1, clock_timestamp(), clock_timestamp() + make_interval(secs => %(ttl)s)
FROM unnest(%(names)s::text[]) AS n
ON CONFLICT (name) DO UPDATE
SET holder = excluded.holder,
    expires_at = excluded.expires_at,
    token = CASE WHEN l.holder = excluded.holder AND l.expires_at > clock_timestamp()
                 THEN l.token ELSE l.token + 1 END,
    acquired_at = CASE WHEN l.holder = excluded.holder AND l.expires_at > clock_timestamp()
                       THEN l.acquired_at ELSE excluded.acquired_at END
WHERE l.holder = excluded.holder OR l.expires_at <= clock_timestamp()
RETURNING name, token;

-- lease_release_many --
-- Give up many leases at once (only those still ours), so others need not wait.
UPDATE tickbase.leases SET expires_at = clock_timestamp()
WHERE name = ANY(%(names)s::text[]) AND holder = %(holder)s AND expires_at > clock_timestamp();

-- lease_live_holders --
-- The holders of the live leases whose names start with %(prefix)s (members of a
-- group: each holds its own member lease).
SELECT DISTINCT holder FROM tickbase.leases
WHERE starts_with(name, %(prefix)s) AND expires_at > clock_timestamp()
ORDER BY holder;
