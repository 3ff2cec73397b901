-- Named statements of ``tickbase bench dashboard``: the synthetic history it
-- loads into its own scratch database (never a user's), and its load figures.

-- dashboard_load_tasks --
-- %(count)s task rows after id %(first_id)s as a week of a busy cluster leaves
-- them: 5 queues, 20 types, 200 symbols in the payload; ~95 % succeeded,
-- 3 % failed (with an error), 1 % cancelled, the newest ~1 % still waiting.
-- A synthetic loader writes the table directly: the queue's statements make
-- one row per call, which would take this machine an hour for 5 million.
INSERT INTO tickbase.tasks (id, task_type, queue, status, payload, result, error, attempts,
                            max_attempts, run_at, created_at, started_at, finished_at, node_id)
SELECT n,
       'bench.type' || (n %% 20),
       'q' || (n %% 5),
       status,
       jsonb_build_object('symbol', 'SYM' || (n %% 200), 'n', n),
       CASE WHEN status = 'succeeded' THEN jsonb_build_object('bars', n %% 100) END,
       CASE WHEN status = 'failed'
            THEN jsonb_build_object('type', 'RuntimeError', 'message', 'synthetic failure') END,
       CASE WHEN status = 'pending' THEN 0 ELSE 1 END,
       1,
       created,
       created,
       CASE WHEN status <> 'pending' THEN created + interval '5 ms' END,
       CASE WHEN status <> 'pending' THEN created + interval '25 ms' END,
       CASE WHEN status <> 'pending' THEN 'bench-node-' || (n %% 4) END
FROM (
    SELECT n,
           %(start)s::timestamptz + (n - %(first_id)s) * %(step)s::interval AS created,
           CASE WHEN n > %(waiting_after)s THEN 'pending'
                WHEN n %% 100 < 3 THEN 'failed'
                WHEN n %% 100 = 3 THEN 'cancelled'
                ELSE 'succeeded' END AS status
    FROM generate_series(%(first_id)s + 1, %(first_id)s + %(count)s) AS n
) rows;

-- dashboard_load_sequence --
-- The id sequence past the loaded rows (new tasks get new ids).
SELECT setval('tickbase.tasks_id_seq', (SELECT max(id) FROM tickbase.tasks));

-- dashboard_load_schedules --
-- %(count)s cron schedules (every minute) of the bench types, next fires spread.
INSERT INTO tickbase.schedules (name, task_type, kind, cron, queue, next_fire_at)
SELECT 'bench-schedule-' || lpad(n::text, 5, '0'), 'bench.type' || (n %% 20), 'cron',
       '* * * * *', 'q' || (n %% 5), date_trunc('minute', now()) + interval '1 minute'
FROM generate_series(1, %(count)s) AS n;

-- dashboard_transactions --
-- Transactions committed in this database so far (the load the dashboards cause).
SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database();
