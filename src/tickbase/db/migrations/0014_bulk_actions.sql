-- Who cancelled or retried everything matching a filter, and what it matched:
-- one row per bulk action, written in the transaction that acts (queue block).
-- The tasks acted on are those matching the filter with id <= up_to_id (the
-- newest id the dry run counted), so a run acts on what its dry run saw, not on
-- tasks created since.
CREATE TABLE tickbase.task_bulk_actions (
    id             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at             timestamptz NOT NULL DEFAULT now(),
    actor_token_id bigint,
    actor          text        NOT NULL,
    action         text        NOT NULL,
    filter         jsonb       NOT NULL,
    up_to_id       bigint      NOT NULL,
    matched        integer     NOT NULL,
    changed        integer     NOT NULL,
    CONSTRAINT task_bulk_actions_action_valid CHECK (action IN ('cancel', 'retry')),
    CONSTRAINT task_bulk_actions_counts_valid CHECK (matched >= 0 AND changed BETWEEN 0 AND matched)
);
