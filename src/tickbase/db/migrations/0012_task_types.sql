-- Nodes publish the task types their workers handle, with each type's enqueue
-- defaults ({"type": {"queue", "priority", "max_attempts", "retry_delay",
-- "timeout"}}): workers claim only those types, so a producer (the gateway,
-- the CLI) can tell whether a live worker will run a task, and enqueue it with
-- the defaults its handler declares, without importing the handler itself.
ALTER TABLE tickbase.nodes ADD COLUMN task_types jsonb NOT NULL DEFAULT '{}'::jsonb;

-- Tasks due for longer than for_seconds whose type no live node handles: they
-- wait pending (never failed) until a worker that can run them starts.
ALTER TABLE tickbase.alert_rules DROP CONSTRAINT alert_rules_kind_valid;
ALTER TABLE tickbase.alert_rules ADD CONSTRAINT alert_rules_kind_valid CHECK (
    kind IN ('failures_last_hour', 'backlog', 'node_down', 'leader_missing', 'schedule_lag',
             'data_completeness', 'no_worker_for_type'));
INSERT INTO tickbase.alert_rules (name, kind, threshold, for_seconds, description) VALUES
    ('no-worker-for-type', 'no_worker_for_type', 0, 60,
     'Tasks are waiting with no live worker for their type (one alert per type)');
