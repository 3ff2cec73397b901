-- tickbase schema, version 4: the nodes of the cluster.

-- One row per live process. A node heartbeats every few seconds with its
-- metrics; one silent for three intervals is dead, and the tasks it held are
-- rescued. A clean shutdown deletes the row at once.
CREATE TABLE tickbase.nodes (
    node_id       text        NOT NULL,
    host          text        NOT NULL,
    pid           integer     NOT NULL,
    roles         text[]      NOT NULL DEFAULT '{}',
    queues        text[],
    version       text        NOT NULL,
    started_at    timestamptz NOT NULL DEFAULT now(),
    heartbeat_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- seconds between heartbeats: each node says how soon it must be heard from
    heartbeat_interval double precision NOT NULL,
    metrics       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    CONSTRAINT nodes_pkey PRIMARY KEY (node_id),
    CONSTRAINT nodes_interval_positive CHECK (heartbeat_interval > 0)
);
