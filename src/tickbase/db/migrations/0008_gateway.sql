-- tickbase schema, version 8: the gateway's request ledger.
--
-- A client names each request (requestId); the gateway records which task a
-- user's request became, so that the final state can be asked for again after
-- a reconnect or a gateway restart (WebSocket tasks.status, HTTP polling), and
-- so that a request re-sent with the same id never makes a second task. The
-- server's task id stays inside: clients only ever see their requestId.
CREATE TABLE tickbase.gateway_requests (
    user_id     text        NOT NULL,
    request_id  text        NOT NULL,
    action      text        NOT NULL,
    task_id     bigint      NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT gateway_requests_pkey PRIMARY KEY (user_id, request_id),
    CONSTRAINT gateway_requests_request_id_valid CHECK (request_id ~ '^[A-Za-z0-9_.:-]{1,128}$')
);
CREATE INDEX gateway_requests_task_idx ON tickbase.gateway_requests (task_id);
