-- A requestId names one request: the gateway stores a hash of the request's
-- body with its ledger row, so that the same id sent with a different body is
-- refused (409) instead of being answered with the first request's task.
-- Rows written before this migration have no hash and are not compared.
ALTER TABLE tickbase.gateway_requests ADD COLUMN body_hash text;
