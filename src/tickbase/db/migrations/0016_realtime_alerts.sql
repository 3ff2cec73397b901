-- tickbase schema, version 17: alert rules on the real-time pipeline.
--
-- (Version 16 is left to another change under way; the runner applies every
-- file it does not find applied, so a gap, or 16 arriving after 17, is fine.)
--
-- The conditions read the compact `realtime` object each alive node's
-- heartbeat writes into tickbase.nodes.metrics while a pipeline runs in it
-- (tickbase.marketdata.realtime.metrics.NodeReport), one alert per subject:
--   realtime_circuit_open  a shard's circuit is open        subject '<node> <shard>'
--   realtime_loop_slow     loop p99 > threshold ms (NULL:
--                          the node's own loop period)     subject '<node>'
--   realtime_writer_drops  bars dropped on a full writer
--                          queue since the previous beat
--                          > threshold                     subject '<node>'
ALTER TABLE tickbase.alert_rules DROP CONSTRAINT alert_rules_kind_valid;
ALTER TABLE tickbase.alert_rules ADD CONSTRAINT alert_rules_kind_valid CHECK (
    kind IN ('failures_last_hour', 'backlog', 'node_down', 'leader_missing', 'schedule_lag',
             'data_completeness', 'no_worker_for_type',
             'realtime_circuit_open', 'realtime_loop_slow', 'realtime_writer_drops'));
ALTER TABLE tickbase.alert_rules DROP CONSTRAINT alert_rules_threshold_needed;
ALTER TABLE tickbase.alert_rules ADD CONSTRAINT alert_rules_threshold_needed CHECK (
    threshold IS NOT NULL
    OR kind IN ('node_down', 'leader_missing', 'realtime_circuit_open', 'realtime_loop_slow'));

INSERT INTO tickbase.alert_rules (name, kind, threshold, for_seconds, description) VALUES
    -- The circuit itself opens only after 5 missed pulls in a row: no more waiting.
    ('realtime-circuit-open', 'realtime_circuit_open', NULL, 0,
     'A real-time shard stopped answering: its circuit is open (one alert per node and shard)'),
    -- p99 of the recent cycles, for a minute: one slow cycle is not an incident.
    ('realtime-loop-slow', 'realtime_loop_slow', NULL, 60,
     'The real-time pulling loop''s p99 exceeds its period (100 ms) for a minute'),
    ('realtime-writer-drops', 'realtime_writer_drops', 0, 0,
     'The real-time bar writer dropped bars since the previous heartbeat (queue full)');
