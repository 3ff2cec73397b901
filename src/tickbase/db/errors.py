"""Database errors become domain errors here, and nowhere else.

Every named constraint and unique index of the schema is in :data:`CONSTRAINTS`:
the :mod:`tickbase.errors` class a violation means and the field it guards, in
the words of the API the caller used. The Python checks come first (they name
the offending value and the fix); the constraints catch what slips past them,
for example rows written by a user's own SQL or a race between two producers.
A test holds the table to the live schema, so a new constraint cannot be left
out, and one that no input can break is listed as an invariant: violating it is
a bug in tickbase's own statements, raised as the database reported it.

Example::

    with domain_errors({"name": spec.name, "queue name": spec.queue}):
        await conn.execute(Q["schedule_insert"], params)
    # a second active schedule of that name raises
    # InvalidSchedule("name", "bars", "a schedule with this name already exists")
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

import psycopg

from tickbase.errors import (
    InvalidAlert,
    InvalidMarketData,
    InvalidSchedule,
    InvalidTask,
    InvalidToken,
    InvalidValue,
    InvalidWorkflow,
    TickbaseError,
)

ErrorFactory = Callable[[str, Mapping[str, Any], str], TickbaseError]
"""Makes the error from (field, the caller's values by field, reason)."""


def _valued(kind: type[InvalidValue]) -> ErrorFactory:
    def make(field: str, values: Mapping[str, Any], reason: str) -> TickbaseError:
        return kind(field, values.get(field), reason)

    make.__name__ = kind.__name__
    return make


def _workflow(field: str, values: Mapping[str, Any], reason: str) -> TickbaseError:
    given = values.get(field)
    detail = f"{field} {given!r}" if given is not None else field
    return InvalidWorkflow(str(values.get("workflow", "?")), f"{detail}: {reason}")


@dataclass(frozen=True, slots=True)
class Meaning:
    """What a violation of one constraint means to the caller.

    ``reason`` None: the server's own message is the reason (a CHECK's message
    names the constraint and the row, which is clear enough for a value that
    passed the Python checks only by being written by hand).
    """

    error: ErrorFactory
    field: str
    reason: str | None = None


INVARIANT: Final = None
"""A constraint no input can break: only tickbase's own statements write these
columns, so a violation is a bug and surfaces as the database reported it."""

CONSTRAINTS: Final[dict[str, Meaning | None]] = {
    # tasks (the queue block)
    "tasks_queue_valid": Meaning(_valued(InvalidTask), "queue name"),
    "tasks_priority_range": Meaning(_valued(InvalidTask), "priority"),
    "tasks_task_type_valid": Meaning(_valued(InvalidTask), "task type"),
    "tasks_timeout_valid": Meaning(_valued(InvalidTask), "timeout"),
    "tasks_retry_delay_valid": Meaning(_valued(InvalidTask), "retry_delay"),
    "tasks_attempts_valid": Meaning(_valued(InvalidTask), "max_attempts"),
    "tasks_concurrency_limit_valid": Meaning(_valued(InvalidTask), "concurrency_limit"),
    "tasks_dedupe_key_active_idx": Meaning(
        _valued(InvalidTask), "dedupe_key", "is held by an unfinished task"
    ),
    "tasks_schedule_fire_idx": INVARIANT,  # fires are inserted ON CONFLICT DO NOTHING
    "tasks_fire_with_schedule": INVARIANT,
    "tasks_finished_at_when_final": INVARIANT,
    "tasks_running_has_lease": INVARIANT,
    "tasks_status_valid": INVARIANT,
    "task_limits_concurrency_limit_valid": Meaning(_valued(InvalidTask), "concurrency_limit"),
    "task_limits_rate_valid": Meaning(_valued(InvalidTask), "rate_limit"),
    "queue_limits_concurrency_valid": Meaning(_valued(InvalidTask), "queue concurrency"),
    # schedules
    "schedules_name_active_idx": Meaning(
        _valued(InvalidSchedule), "name", "a schedule with this name already exists"
    ),
    "schedules_name_valid": Meaning(_valued(InvalidSchedule), "name"),
    "schedules_queue_valid": Meaning(_valued(InvalidSchedule), "queue name"),
    "schedules_priority_range": Meaning(_valued(InvalidSchedule), "priority"),
    "schedules_retries_valid": Meaning(_valued(InvalidSchedule), "retries"),
    "schedules_max_instances_valid": Meaning(_valued(InvalidSchedule), "max_instances"),
    "schedules_misfire_valid": Meaning(_valued(InvalidSchedule), "misfire_grace_seconds"),
    "schedules_kind_fields": Meaning(_valued(InvalidSchedule), "trigger"),
    "schedules_kind_valid": Meaning(_valued(InvalidSchedule), "kind"),
    "schedules_origin_valid": INVARIANT,
    # workflows
    "workflows_name_key": INVARIANT,  # definitions are upserted by name
    "workflows_mode_valid": Meaning(_workflow, "mode"),
    "workflows_on_failure_valid": Meaning(_workflow, "on_failure"),
    "workflows_max_parallel_valid": Meaning(_workflow, "max_parallel"),
    "workflows_steps_not_empty": Meaning(_workflow, "steps"),
    "workflow_runs_started_by_task_idx": INVARIANT,
    "workflow_runs_finished_at_when_final": INVARIANT,
    "workflow_runs_status_valid": INVARIANT,
    "workflow_steps_status_valid": INVARIANT,
    # alerts
    "alert_rules_for_seconds_valid": Meaning(_valued(InvalidAlert), "for_seconds"),
    "alert_rules_threshold_valid": Meaning(_valued(InvalidAlert), "threshold"),
    "alert_rules_threshold_needed": Meaning(
        _valued(InvalidAlert), "threshold", "this rule needs one"
    ),
    "alert_rules_kind_valid": Meaning(_valued(InvalidAlert), "alert kind"),
    "alert_webhooks_url_http": Meaning(_valued(InvalidAlert), "url", "must be an http(s) URL"),
    "alert_webhooks_url_key": INVARIANT,  # adding a URL again re-enables it
    "alerts_firing_idx": INVARIANT,
    "alerts_resolved_at_when_resolved": INVARIANT,
    "alerts_state_valid": INVARIANT,
    "alert_deliveries_attempts_valid": INVARIANT,
    "alert_deliveries_delivered_is_final": INVARIANT,
    "alert_deliveries_event_valid": INVARIANT,
    # tokens and the gateway
    "api_tokens_live_name_key": Meaning(
        _valued(InvalidToken),
        "token name",
        "a live token already has it "
        "(names are unique labels; revoke that token or choose another name)",
    ),
    "api_tokens_name_length": Meaning(
        _valued(InvalidToken), "token name", "must be 1 to 200 characters"
    ),
    "api_tokens_name_printable": Meaning(
        _valued(InvalidToken), "token name", "must not contain control characters"
    ),
    "api_tokens_role_valid": Meaning(_valued(InvalidToken), "role", "must be 'admin' or 'viewer'"),
    "api_tokens_prefix_length": INVARIANT,
    "api_tokens_token_hash_key": INVARIANT,
    "api_tokens_token_hash_sha256": INVARIANT,
    "auth_secrets_secret_length": INVARIANT,
    "gateway_requests_request_id_valid": Meaning(_valued(InvalidTask), "requestId"),
    # the cluster
    "leases_token_positive": INVARIANT,
    "nodes_interval_positive": INVARIANT,
    # market data
    "klines_interval_valid": Meaning(_valued(InvalidMarketData), "interval"),
    "klines_symbol_valid": Meaning(_valued(InvalidMarketData), "symbol"),
    "klines_prices_valid": Meaning(_valued(InvalidMarketData), "prices"),
    "observations_kind_valid": Meaning(_valued(InvalidMarketData), "observation kind"),
    "observations_series_valid": Meaning(_valued(InvalidMarketData), "series"),
    "observations_value_finite": Meaning(
        _valued(InvalidMarketData), "value", "must be a finite number"
    ),
    "series_integrity_counts_valid": INVARIANT,
    # bulk actions (the API checks the action; the counts are the statement's own)
    "task_bulk_actions_action_valid": INVARIANT,
    "task_bulk_actions_counts_valid": INVARIANT,
}


def domain_error(
    exc: psycopg.errors.IntegrityError, values: Mapping[str, Any] | None = None
) -> TickbaseError | None:
    """The domain error that ``exc`` means, or None when its constraint is an
    invariant (or unknown). ``values``: what the caller gave, by field name as
    in :data:`CONSTRAINTS`, so the error can quote the value it refuses."""
    name = exc.diag.constraint_name or ""
    meaning = CONSTRAINTS.get(name)
    if meaning is None:
        return None
    reason = meaning.reason or str(exc.diag.message_primary or name)
    return meaning.error(meaning.field, values or {}, reason)


@contextlib.contextmanager
def domain_errors(values: Mapping[str, Any] | None = None) -> Iterator[None]:
    """Within the block, a constraint violation is raised as its domain error
    (see :func:`domain_error`); an invariant's violation propagates as it is.

    It works around ``await`` too: the violation surfaces at the statement's await.
    """
    try:
        yield
    except psycopg.errors.IntegrityError as exc:
        error = domain_error(exc, values)
        if error is None:
            raise
        raise error from None
