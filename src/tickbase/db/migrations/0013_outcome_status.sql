-- How a worker's reported outcome moves a running task, in one definition:
-- task_finish_many sets the new status with it (and finished_at from that), and
-- a test holds the worker's OutcomeKind enum to it. Outcomes:
--   succeeded     the handler returned
--   failed        it raised: retried (backoff) while attempts remain, unless a
--                 cancel was requested
--   retry         it asked to be retried (tickbase.Retry): as failed, with the
--                 delay it chose; the attempt counts
--   failed_final  it cannot run here at all (no handler): failed at once
--   cancelled     it was cancelled while running, or asked to be (tickbase.Cancel)
--   snoozed       it asked to run again later (tickbase.Snooze): pending again,
--                 the attempt not counted; cancelled instead if a cancel was requested
--   requeued      the worker shut down: pending again, the attempt not counted
CREATE FUNCTION tickbase.outcome_status(
    outcome text, attempts integer, max_attempts integer, cancel_requested boolean
) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE
    WHEN outcome IN ('failed', 'retry') AND attempts < max_attempts AND NOT cancel_requested
        THEN 'retrying'
    WHEN outcome IN ('failed', 'retry', 'failed_final') THEN 'failed'
    WHEN outcome = 'requeued' THEN 'pending'
    WHEN outcome = 'snoozed' AND cancel_requested THEN 'cancelled'
    WHEN outcome = 'snoozed' THEN 'pending'
    WHEN outcome IN ('succeeded', 'cancelled') THEN outcome
END;
