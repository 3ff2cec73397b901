-- alert_evaluate --
-- One evaluation pass, in one statement: the conditions that hold now, the
-- for_seconds bookkeeping, the firings and resolutions, one outbox row per
-- change and enabled webhook, and a NOTIFY per change. Rows back: the changes.
--
-- Each condition's subquery names its rule (r.kind = ...) so that a pass
-- limited to some kinds (every node's leader_missing check) never counts
-- tasks: the subquery is then gated off instead of run.
--
-- Races: evaluators that overlap (the leader's pass and the nodes' leader
-- checks) may all decide to fire the same incident; the partial unique index
-- alerts_firing_idx lets one insert through, the others do nothing and so
-- neither queue deliveries nor notify. A resolution is guarded by
-- state = 'firing', which READ COMMITTED rechecks on the newest row version,
-- so it also happens once. Every evaluator runs this same statement, so they
-- take row locks in the same order and do not deadlock each other.
WITH clock AS (
    SELECT coalesce(%(now)s::timestamptz, clock_timestamp()) AS now
), scope AS (
    -- Disabled rules stay in scope: their firing alerts resolve.
    SELECT name, kind, threshold, for_seconds, enabled FROM tickbase.alert_rules
    WHERE %(kinds)s::text[] IS NULL OR kind = ANY(%(kinds)s::text[])
), held AS (
    SELECT r.name AS rule, ''::text AS subject, f.n AS value, NULL::timestamptz AS since,
           f.n || ' tasks failed in the last hour (threshold ' || r.threshold || ')' AS message,
           jsonb_build_object('threshold', r.threshold, 'window_seconds', 3600,
                              'by_task_type', f.by_task_type) AS detail
    FROM scope r CROSS JOIN clock c
    CROSS JOIN LATERAL (
        SELECT coalesce(sum(g.n), 0)::float8 AS n,
               coalesce(jsonb_object_agg(g.task_type, g.n) FILTER (WHERE g.rank <= 5), '{}')
                   AS by_task_type
        FROM (SELECT task_type, count(*) AS n,
                     row_number() OVER (ORDER BY count(*) DESC, task_type) AS rank
              FROM tickbase.tasks
              WHERE r.kind = 'failures_last_hour' AND status = 'failed'
                AND finished_at > c.now - interval '1 hour'
              GROUP BY task_type) g
    ) f
    WHERE r.enabled AND r.kind = 'failures_last_hour' AND f.n > r.threshold

    UNION ALL
    SELECT r.name, '', b.n, NULL,
           b.n || ' tasks are due and waiting for a worker (threshold ' || r.threshold || ')',
           jsonb_build_object('threshold', r.threshold, 'oldest_due_seconds', b.oldest)
    FROM scope r CROSS JOIN clock c
    CROSS JOIN LATERAL (
        SELECT count(*)::float8 AS n, extract(epoch FROM c.now - min(run_at))::float8 AS oldest
        FROM tickbase.tasks
        WHERE r.kind = 'backlog' AND status IN ('pending', 'retrying') AND run_at <= c.now
    ) b
    WHERE r.enabled AND r.kind = 'backlog' AND b.n > r.threshold

    UNION ALL
    -- A node still registered but silent (the reaper has not run yet) ...
    SELECT r.name, n.node_id, extract(epoch FROM c.now - n.heartbeat_at)::float8,
           n.heartbeat_at + make_interval(secs => coalesce(r.threshold, 3 * n.heartbeat_interval)),
           'node ' || n.node_id || ' on ' || n.host || ' has not heartbeated for '
               || round(extract(epoch FROM c.now - n.heartbeat_at)) || ' s',
           jsonb_build_object('host', n.host, 'roles', n.roles, 'heartbeat_at', n.heartbeat_at,
                              'removed', false)
    FROM scope r CROSS JOIN clock c
    JOIN tickbase.nodes n
        ON n.heartbeat_at < c.now - make_interval(secs => coalesce(r.threshold,
                                                                  3 * n.heartbeat_interval))
    WHERE r.enabled AND r.kind = 'node_down'

    UNION ALL
    -- ... or already reaped and not back. After a day the record is dropped
    -- (lost_pruned) and the alert resolves: node ids are per process, so most
    -- lost nodes never return.
    SELECT r.name, l.node_id, extract(epoch FROM c.now - l.heartbeat_at)::float8, l.lost_at,
           'node ' || l.node_id || ' on ' || l.host || ' stopped heartbeating '
               || round(extract(epoch FROM c.now - l.heartbeat_at))
               || ' s ago; it was removed and its running tasks rescued',
           jsonb_build_object('host', l.host, 'roles', l.roles, 'heartbeat_at', l.heartbeat_at,
                              'removed', true, 'lost_at', l.lost_at)
    FROM scope r CROSS JOIN clock c
    JOIN tickbase.lost_nodes l ON l.lost_at > c.now - interval '1 day'
    WHERE r.enabled AND r.kind = 'node_down'
      AND NOT EXISTS (SELECT 1 FROM tickbase.nodes n WHERE n.node_id = l.node_id)

    UNION ALL
    SELECT r.name, '', extract(epoch FROM c.now - l.expires_at)::float8, l.expires_at,
           CASE WHEN l.name IS NULL THEN 'no node holds the leader lease (none ever has)'
                ELSE 'no node holds the leader lease (the lease of ' || l.holder
                     || ' expired ' || round(extract(epoch FROM c.now - l.expires_at))
                     || ' s ago)' END,
           jsonb_build_object('last_holder', l.holder, 'expired_at', l.expires_at,
                              'token', l.token)
    FROM scope r CROSS JOIN clock c
    LEFT JOIN tickbase.leases l ON l.name = 'leader'
    WHERE r.enabled AND r.kind = 'leader_missing'
      AND (l.expires_at IS NULL OR l.expires_at <= c.now)

    UNION ALL
    SELECT r.name, '', s.lag, s.next_fire_at + make_interval(secs => r.threshold),
           'schedule ' || s.name || ' is ' || round(s.lag::numeric) || ' s late (threshold '
               || r.threshold || ' s; late schedules: ' || s.late || ')',
           jsonb_build_object('threshold', r.threshold, 'schedule', s.name,
                              'next_fire_at', s.next_fire_at, 'late_schedules', s.late)
    FROM scope r CROSS JOIN clock c
    CROSS JOIN LATERAL (
        SELECT name, next_fire_at, extract(epoch FROM c.now - next_fire_at)::float8 AS lag,
               count(*) OVER () AS late
        FROM tickbase.schedules
        WHERE r.kind = 'schedule_lag' AND enabled AND NOT paused AND removed_at IS NULL
          AND kind <> 'manual' AND next_fire_at < c.now - make_interval(secs => r.threshold)
        ORDER BY next_fire_at, name
        LIMIT 1
    ) s
    WHERE r.enabled AND r.kind = 'schedule_lag'

    UNION ALL
    -- Due tasks of a type no live worker handles (workers claim only their own
    -- types): one alert per type, since its oldest task became due.
    SELECT r.name, w.task_type, w.n, w.oldest,
           w.n || ' tasks of type ' || w.task_type || ' are waiting: no live worker handles it',
           jsonb_build_object('task_type', w.task_type, 'waiting', w.n, 'oldest_due_at', w.oldest)
    FROM scope r CROSS JOIN clock c
    CROSS JOIN LATERAL (
        SELECT t.task_type, count(*)::float8 AS n, min(t.run_at) AS oldest
        FROM tickbase.tasks t
        WHERE r.kind = 'no_worker_for_type' AND t.status IN ('pending', 'retrying')
          AND t.run_at <= c.now
          AND NOT EXISTS (
              SELECT 1 FROM tickbase.nodes n
              WHERE n.task_types ? t.task_type
                AND n.heartbeat_at > c.now - make_interval(secs => 3 * n.heartbeat_interval))
        GROUP BY t.task_type
    ) w
    WHERE r.enabled AND r.kind = 'no_worker_for_type' AND w.n > r.threshold

    UNION ALL
    -- A collected series below the threshold (percent complete: here BELOW
    -- fires) at its last integrity check; a check older than a day is ignored
    -- (the series is no longer collected).
    SELECT r.name, i.symbol || ' ' || i.interval, i.completeness, i.checked_at,
           i.symbol || ' ' || i.interval || ' is ' || round(i.completeness::numeric, 1)
               || '%% complete (' || i.present || ' of ' || i.expected || ' bars since '
               || to_char(i.window_start AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI"Z"')
               || '; threshold ' || r.threshold || '%%)',
           jsonb_build_object('threshold', r.threshold, 'symbol', i.symbol,
                              'interval', i.interval, 'expected', i.expected,
                              'present', i.present, 'missing', i.missing)
    FROM scope r CROSS JOIN clock c
    JOIN tickbase.series_integrity i
        ON r.kind = 'data_completeness' AND i.completeness < r.threshold
       AND i.checked_at > c.now - interval '1 day'
    WHERE r.enabled AND r.kind = 'data_completeness'

    UNION ALL
    -- The real-time pipeline, from the `realtime` object of alive nodes'
    -- heartbeat metrics (see 0017_realtime_alerts.sql): a shard's open circuit,
    -- one alert per node and shard; a dead node's alerts resolve (node_down
    -- says why).
    SELECT r.name, n.node_id || ' ' || o.shard,
           jsonb_array_length(n.metrics -> 'realtime' -> 'circuits_open')::float8,
           NULL::timestamptz,
           'real-time shard ' || o.shard || ' on node ' || n.node_id
               || ' stopped answering: its circuit is open',
           jsonb_build_object('node', n.node_id, 'host', n.host, 'shard', o.shard,
                              'circuits_open', n.metrics -> 'realtime' -> 'circuits_open')
    FROM scope r CROSS JOIN clock c
    JOIN tickbase.nodes n
        ON r.kind = 'realtime_circuit_open'
       AND n.heartbeat_at > c.now - make_interval(secs => 3 * n.heartbeat_interval)
       AND jsonb_typeof(n.metrics -> 'realtime' -> 'circuits_open') = 'array'
    CROSS JOIN LATERAL jsonb_array_elements_text(n.metrics -> 'realtime' -> 'circuits_open')
        AS o(shard)
    WHERE r.enabled AND r.kind = 'realtime_circuit_open'

    UNION ALL
    -- Loop p99 above the threshold (ms; NULL: the node's own period).
    SELECT r.name, n.node_id, l.p99, NULL,
           'the real-time loop on node ' || n.node_id || ' takes ' || round(l.p99::numeric, 1)
               || ' ms at p99 (threshold ' || round(l.limit_ms::numeric, 1) || ' ms)',
           jsonb_build_object('node', n.node_id, 'host', n.host, 'threshold_ms', l.limit_ms,
                              'period_ms', n.metrics -> 'realtime' -> 'period_ms',
                              'overruns', n.metrics -> 'realtime' -> 'overruns')
    FROM scope r CROSS JOIN clock c
    JOIN tickbase.nodes n
        ON r.kind = 'realtime_loop_slow'
       AND n.heartbeat_at > c.now - make_interval(secs => 3 * n.heartbeat_interval)
       AND jsonb_typeof(n.metrics -> 'realtime' -> 'loop_p99_ms') = 'number'
    CROSS JOIN LATERAL (
        SELECT (n.metrics -> 'realtime' ->> 'loop_p99_ms')::float8 AS p99,
               coalesce(r.threshold, (n.metrics -> 'realtime' ->> 'period_ms')::float8, 100)
                   AS limit_ms
    ) l
    WHERE r.enabled AND r.kind = 'realtime_loop_slow' AND l.p99 > l.limit_ms

    UNION ALL
    -- Bars dropped on a full writer queue since the node's previous heartbeat:
    -- fires at the beat that reports them, resolves at the first beat without.
    SELECT r.name, n.node_id, d.n, NULL,
           'the real-time writer on node ' || n.node_id || ' dropped ' || d.n
               || ' bars since the previous heartbeat (queue full: '
               || coalesce(n.metrics -> 'realtime' ->> 'writer_depth', '?') || ' of '
               || coalesce(n.metrics -> 'realtime' ->> 'writer_capacity', '?') || ')',
           jsonb_build_object('node', n.node_id, 'host', n.host, 'threshold', r.threshold,
                              'dropped_total', n.metrics -> 'realtime' -> 'writer_dropped',
                              'depth', n.metrics -> 'realtime' -> 'writer_depth',
                              'capacity', n.metrics -> 'realtime' -> 'writer_capacity')
    FROM scope r CROSS JOIN clock c
    JOIN tickbase.nodes n
        ON r.kind = 'realtime_writer_drops'
       AND n.heartbeat_at > c.now - make_interval(secs => 3 * n.heartbeat_interval)
       AND jsonb_typeof(n.metrics -> 'realtime' -> 'writer_drops_recent') = 'number'
    CROSS JOIN LATERAL (
        SELECT (n.metrics -> 'realtime' ->> 'writer_drops_recent')::float8 AS n
    ) d
    WHERE r.enabled AND r.kind = 'realtime_writer_drops' AND d.n > r.threshold
), cond AS (
    -- Since when each condition has held: the first pass that saw it, or
    -- earlier when the data says so (a lease's expiry, a node's last beat),
    -- so a condition that began before anyone looked still waits no longer.
    SELECT h.*, p.rule IS NOT NULL AS was_pending,
           least(p.since, h.since, c.now) AS held_since
    FROM held h CROSS JOIN clock c
    LEFT JOIN tickbase.alert_pending p ON p.rule = h.rule AND p.subject = h.subject
), pending_added AS (
    INSERT INTO tickbase.alert_pending (rule, subject, since)
    SELECT rule, subject, held_since FROM cond WHERE NOT was_pending
    ON CONFLICT (rule, subject) DO NOTHING
), pending_cleared AS (
    DELETE FROM tickbase.alert_pending p
    USING scope s
    WHERE p.rule = s.name
      AND NOT EXISTS (SELECT 1 FROM held h WHERE h.rule = p.rule AND h.subject = p.subject)
), lost_pruned AS (
    -- Lost nodes that came back (they heartbeat again under the same id) or
    -- that have been gone for a day; the conditions above already ignore them.
    DELETE FROM tickbase.lost_nodes l
    USING clock c
    WHERE EXISTS (SELECT 1 FROM scope WHERE kind = 'node_down')
      AND (l.lost_at <= c.now - interval '1 day'
           OR EXISTS (SELECT 1 FROM tickbase.nodes n WHERE n.node_id = l.node_id))
), fired AS (
    INSERT INTO tickbase.alerts (rule, subject, value, message, detail, fired_at)
    SELECT d.rule, d.subject, d.value, d.message, d.detail, c.now
    FROM cond d CROSS JOIN clock c
    JOIN scope s ON s.name = d.rule
    WHERE d.held_since <= c.now - make_interval(secs => s.for_seconds)
      AND NOT EXISTS (SELECT 1 FROM tickbase.alerts a
                      WHERE a.rule = d.rule AND a.subject = d.subject AND a.state = 'firing')
    ORDER BY d.rule, d.subject
    ON CONFLICT (rule, subject) WHERE state = 'firing' DO NOTHING
    RETURNING id, rule, subject, state, value, message, detail, fired_at, resolved_at
), resolved AS (
    UPDATE tickbase.alerts a
    SET state = 'resolved', resolved_at = greatest(c.now, a.fired_at)
    FROM scope s CROSS JOIN clock c
    WHERE a.rule = s.name AND a.state = 'firing'
      AND NOT EXISTS (SELECT 1 FROM held h WHERE h.rule = a.rule AND h.subject = a.subject)
    RETURNING a.id, a.rule, a.subject, a.state, a.value, a.message, a.detail, a.fired_at,
              a.resolved_at
), changes AS (
    SELECT ch.id, ch.event,
           jsonb_build_object('id', ch.id, 'event', ch.event, 'rule', ch.rule, 'kind', s.kind,
                              'subject', ch.subject, 'state', ch.state, 'value', ch.value,
                              'message', ch.message, 'detail', ch.detail,
                              'fired_at', ch.fired_at, 'resolved_at', ch.resolved_at) AS payload
    FROM (SELECT 'fired' AS event, * FROM fired
          UNION ALL
          SELECT 'resolved' AS event, * FROM resolved) ch
    JOIN scope s ON s.name = ch.rule
), queued AS (
    INSERT INTO tickbase.alert_deliveries (alert_id, event, webhook_id, payload)
    SELECT ch.id, ch.event, w.id, ch.payload
    FROM changes ch CROSS JOIN tickbase.alert_webhooks w
    WHERE w.enabled
    ORDER BY ch.id, w.id
)
-- The NOTIFY is in the main query on purpose: a SELECT in WITH that nothing
-- reads is never run. A payload over NOTIFY's 8000-byte limit would fail the
-- caller's whole transaction, so an oversized detail is left out of it.
SELECT ch.event, ch.payload
FROM changes ch
CROSS JOIN LATERAL (
    SELECT pg_notify('tickbase_alerts', CASE WHEN octet_length(ch.payload::text) < 7900
                                             THEN ch.payload ELSE ch.payload - 'detail' END::text)
) notified
ORDER BY ch.id, ch.event;

-- alert_rule_list --
SELECT name, kind, threshold, for_seconds, enabled, description, updated_at
FROM tickbase.alert_rules
ORDER BY name;

-- alert_rule_update --
-- Change what was given (NULL keeps the stored value); the row back is the rule
-- as stored, nothing back when no rule has that name.
UPDATE tickbase.alert_rules
SET threshold = coalesce(%(threshold)s::float8, threshold),
    for_seconds = coalesce(%(for_seconds)s::float8, for_seconds),
    enabled = coalesce(%(enabled)s::boolean, enabled),
    updated_at = now()
WHERE name = %(name)s
RETURNING name, kind, threshold, for_seconds, enabled, description, updated_at;

-- alert_list --
-- Newest first; NULL state lists both.
SELECT a.id, a.rule, r.kind, a.subject, a.state, a.value, a.message, a.detail, a.fired_at,
       a.resolved_at
FROM tickbase.alerts a
JOIN tickbase.alert_rules r ON r.name = a.rule
WHERE (%(state)s::text IS NULL OR a.state = %(state)s::text)
  AND (%(before_id)s::bigint IS NULL OR a.id < %(before_id)s::bigint)
ORDER BY a.id DESC
LIMIT %(limit)s;

-- alert_webhook_add --
-- Adding a URL again enables it again and keeps its id.
INSERT INTO tickbase.alert_webhooks (url) VALUES (%(url)s)
ON CONFLICT (url) DO UPDATE SET enabled = true
RETURNING id;

-- alert_webhook_remove --
DELETE FROM tickbase.alert_webhooks WHERE id = %(id)s RETURNING id;

-- alert_webhook_list --
SELECT id, url, enabled, created_at FROM tickbase.alert_webhooks ORDER BY id;

-- alert_delivery_claim --
-- Take due deliveries for one attempt. The claim is a lease, not an open
-- transaction: next_attempt_at moves past the POST's timeout, so a node that
-- dies mid-POST leaves the row due again, and no transaction stays open while
-- a slow receiver answers. SKIP LOCKED: concurrent notifiers split the rows.
WITH due AS (
    SELECT d.id, w.url
    FROM tickbase.alert_deliveries d
    JOIN tickbase.alert_webhooks w ON w.id = d.webhook_id AND w.enabled
    WHERE d.next_attempt_at <= clock_timestamp()
    ORDER BY d.next_attempt_at, d.id
    LIMIT %(limit)s
    FOR UPDATE OF d SKIP LOCKED
)
UPDATE tickbase.alert_deliveries d
SET attempts = d.attempts + 1,
    next_attempt_at = clock_timestamp() + make_interval(secs => %(lease_seconds)s)
FROM due
WHERE d.id = due.id
RETURNING d.id, d.attempts, d.event, d.payload, due.url, d.webhook_id;

-- alert_delivery_record --
-- Outcomes of one batch of attempts. Guarded by the attempt number: a notifier
-- whose lease ran out (and whose row another notifier took) writes nothing.
-- A failure is retried after retry_in seconds, or given up (NULL). A success
-- keeps the previous error: it says why the delivery took several attempts.
UPDATE tickbase.alert_deliveries d
SET delivered_at = CASE WHEN o.ok THEN clock_timestamp() END,
    next_attempt_at = CASE WHEN o.ok OR o.retry_in IS NULL THEN NULL
                           ELSE clock_timestamp() + make_interval(secs => o.retry_in) END,
    last_error = CASE WHEN o.ok THEN d.last_error ELSE o.error END
FROM unnest(%(ids)s::bigint[], %(attempts)s::int[], %(oks)s::boolean[],
            %(retry_in)s::float8[], %(errors)s::text[]) AS o(id, attempts, ok, retry_in, error)
WHERE d.id = o.id AND d.attempts = o.attempts AND d.delivered_at IS NULL;
