"""The gateway's request bodies refuse bad input by name, and its shapes speak camelCase.

Proven here, without a server: every body (tasks, schedules, workflows,
tokens, limits, alert rules) refuses unknown fields, loose types, values out
of bounds and U+0000, each with the camelCase path of the field and a message
saying what is wrong; ``runAt`` needs a time zone; the deprecated
``everySeconds`` becomes ``intervalSeconds``; a schedule update refuses null
for the fields that cannot be cleared; outputs dump in camelCase.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from tickbase.gateway.admin_schemas import (
    AlertRuleUpdate,
    QueueLimitIn,
    TokenCreate,
)
from tickbase.gateway.errors import validation_details
from tickbase.gateway.schemas import (
    INT4_MAX,
    SECONDS_MAX,
    AlertOut,
    ScheduleCreate,
    ScheduleUpdate,
    StepDefinition,
    TaskOut,
    TaskSubmit,
    TriggerIn,
    WorkflowIn,
)

NOW = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


def refusal(model: type[BaseModel], data: dict[str, Any]) -> dict[str, str]:
    """What ``model`` says about ``data``: message by field path (as the API shows them)."""
    with pytest.raises(ValidationError) as excinfo:
        model.model_validate(data)
    return {d["path"]: d["message"] for d in validation_details(excinfo.value.errors())}


def task(**fields: Any) -> dict[str, Any]:
    return {"taskType": "t.add", **fields}


# ---- tasks ---------------------------------------------------------------------------


def test_a_minimal_submission_leaves_every_option_to_the_task_type() -> None:
    body = TaskSubmit.model_validate({"taskType": "t.add"})
    assert body.task_type == "t.add"
    assert body.payload == {}
    unset = ("queue", "priority", "delay_seconds", "run_at", "max_attempts", "retry_delay")
    assert all(getattr(body, name) is None for name in unset)
    assert (body.timeout, body.dedupe_key, body.request_id) == (None, None, None)


def test_every_option_is_read_from_its_camel_case_name() -> None:
    body = TaskSubmit.model_validate(
        task(
            payload={"a": 1},
            queue="q.1:x-y",
            priority=1000,
            runAt="2030-01-02T03:04:05+00:00",
            maxAttempts=3,
            retryDelay=2,
            timeout=0.5,
            dedupeKey="k" * 200,
            requestId="r:1.a_b-c",
        )
    )
    assert body.run_at == NOW
    assert (body.queue, body.priority, body.max_attempts) == ("q.1:x-y", 1000, 3)
    assert (body.retry_delay, body.timeout) == (2, 0.5)
    assert body.dedupe_key == "k" * 200 and body.request_id == "r:1.a_b-c"


def test_python_code_may_use_the_snake_case_names() -> None:
    body = TaskSubmit(task_type="t.add", delay_seconds=5.0)
    assert body.delay_seconds == 5.0
    assert body.model_dump(by_alias=True, exclude_none=True) == {
        "taskType": "t.add",
        "payload": {},
        "delaySeconds": 5.0,
    }


@pytest.mark.parametrize(
    ("fields", "path", "message"),
    [
        ({"priority": "5"}, "priority", "valid integer"),
        ({"priority": True}, "priority", "valid integer"),
        ({"priority": 1.5}, "priority", "valid integer"),
        ({"delaySeconds": "1"}, "delaySeconds", "valid number"),
        ({"payload": [1, 2]}, "payload", "valid dictionary"),
        ({"taskType": 7}, "taskType", "valid string"),
        ({"dedupeKey": 5}, "dedupeKey", "valid string"),
    ],
)
def test_types_are_strict(fields: dict[str, Any], path: str, message: str) -> None:
    assert message in refusal(TaskSubmit, task(**fields))[path]


@pytest.mark.parametrize(
    ("fields", "path", "message"),
    [
        ({"taskType": ""}, "taskType", "at least 1 character"),
        ({"taskType": "t" * 201}, "taskType", "at most 200 characters"),
        ({"priority": -1}, "priority", "greater than or equal to 0"),
        ({"priority": 1001}, "priority", "less than or equal to 1000"),
        ({"delaySeconds": -0.001}, "delaySeconds", "greater than or equal to 0"),
        ({"delaySeconds": 366 * 86400 + 1}, "delaySeconds", "less than or equal to 31622400"),
        ({"maxAttempts": 0}, "maxAttempts", "greater than or equal to 1"),
        ({"maxAttempts": 1001}, "maxAttempts", "less than or equal to 1000"),
        ({"retryDelay": -1}, "retryDelay", "greater than or equal to 0"),
        ({"retryDelay": SECONDS_MAX * 2}, "retryDelay", "less than or equal to"),
        ({"timeout": 0}, "timeout", "greater than 0"),
        ({"timeout": SECONDS_MAX + 1}, "timeout", "less than or equal to"),
        ({"dedupeKey": ""}, "dedupeKey", "at least 1 character"),
        ({"dedupeKey": "k" * 201}, "dedupeKey", "at most 200 characters"),
        ({"queue": ""}, "queue", "should match pattern"),
        ({"queue": "q" * 65}, "queue", "should match pattern"),
        ({"queue": "with space"}, "queue", "should match pattern"),
        ({"requestId": "r" * 129}, "requestId", "should match pattern"),
        ({"requestId": "a/b"}, "requestId", "should match pattern"),
    ],
)
def test_values_out_of_bounds_are_refused_by_field(
    fields: dict[str, Any], path: str, message: str
) -> None:
    assert message in refusal(TaskSubmit, task(**fields))[path]


def test_the_bounds_themselves_are_accepted() -> None:
    body = TaskSubmit.model_validate(
        task(
            priority=0,
            delaySeconds=366 * 86400,
            maxAttempts=1000,
            retryDelay=SECONDS_MAX,
            timeout=SECONDS_MAX,
            queue="q" * 64,
            requestId="r" * 128,
        )
    )
    assert body.delay_seconds == 366 * 86400 and body.queue == "q" * 64


def test_unknown_fields_are_refused_and_a_snake_case_twin_is_unknown() -> None:
    assert refusal(TaskSubmit, task(priorty=1)) == {"priorty": "Extra inputs are not permitted"}
    # The JSON name wins: the Python name beside it is a second, unknown field.
    assert "task_type" in refusal(TaskSubmit, task(task_type="other"))


def test_several_problems_are_reported_together() -> None:
    problems = refusal(TaskSubmit, {"priority": 5000, "queue": "a b", "extra": 1})
    assert set(problems) == {"taskType", "priority", "queue", "extra"}
    assert problems["taskType"] == "Field required"


@pytest.mark.parametrize(
    "run_at",
    ["2030-01-02T03:04:05Z", "2030-01-02T05:04:05+02:00", "2030-01-02T03:04:05.000+00:00"],
)
def test_run_at_is_iso_8601_with_any_time_zone(run_at: str) -> None:
    assert TaskSubmit.model_validate(task(runAt=run_at)).run_at == NOW


def test_run_at_may_be_a_datetime_from_python() -> None:
    later = NOW.astimezone(timezone(timedelta(hours=-5)))
    assert TaskSubmit(task_type="t.add", run_at=later).run_at == NOW


@pytest.mark.parametrize(
    ("run_at", "message"),
    [
        ("2030-01-02T03:04:05", "must carry a time zone (for example 2030-01-01T00:00:00Z)"),
        ("2030-01-02", "must carry a time zone"),
        ("tomorrow", "must be an ISO 8601 date and time"),
        ("", "must be an ISO 8601 date and time"),
        (1_900_000_000, "valid datetime"),
    ],
)
def test_run_at_without_a_zone_or_not_a_time_is_refused(run_at: Any, message: str) -> None:
    assert message in refusal(TaskSubmit, task(runAt=run_at))["runAt"]


def test_a_naive_datetime_from_python_is_refused_too() -> None:
    with pytest.raises(ValidationError, match="must carry a time zone"):
        TaskSubmit(task_type="t.add", run_at=datetime(2030, 1, 1))


def test_run_at_and_delay_exclude_each_other() -> None:
    problems = refusal(TaskSubmit, task(runAt="2030-01-01T00:00:00Z", delaySeconds=0))
    assert problems == {"": "Value error, give runAt or delaySeconds, not both"}


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"taskType": "t.\x00"}, "taskType"),
        ({"payload": {"text": "a\x00b"}}, "payload"),
        ({"payload": {"key\x00": 1}}, "payload"),
        ({"payload": {"deep": [{"list": ["\x00"]}]}}, "payload"),
        ({"dedupeKey": "\x00"}, "dedupeKey"),
    ],
)
def test_nul_anywhere_is_refused_naming_the_field(fields: dict[str, Any], field: str) -> None:
    assert refusal(TaskSubmit, task(**fields)) == {
        "": f"Value error, {field} contains the character U+0000"
    }


def test_other_control_characters_and_unicode_are_kept() -> None:
    payload = {"tab": "a\tb", "bell": "\x07", "emoji": "\U0001f600", "rtl": "\u202e"}
    assert TaskSubmit.model_validate(task(payload=payload)).payload == payload


def test_task_out_dumps_in_camel_case() -> None:
    out = TaskOut(
        id=1,
        task_type="t.add",
        queue="default",
        priority=0,
        status="pending",
        payload={"a_b": 1},
        attempts=0,
        max_attempts=1,
        retry_delay=1.0,
        run_at=NOW,
        created_at=NOW,
    )
    dumped = out.model_dump(by_alias=True, mode="json")
    assert {"taskType", "maxAttempts", "retryDelay", "runAt", "workflowRunId"} <= set(dumped)
    assert not [key for key in dumped if "_" in key]
    assert dumped["payload"] == {"a_b": 1}  # the user's payload keeps its own keys
    assert dumped["runAt"] == "2030-01-02T03:04:05Z"


# ---- schedules -----------------------------------------------------------------------


def schedule(**fields: Any) -> dict[str, Any]:
    return {"name": "nightly report", "taskType": "t.add", **fields}


def test_a_schedule_has_its_documented_defaults() -> None:
    body = ScheduleCreate.model_validate(schedule(cron="0 3 * * *"))
    assert (body.timezone, body.queue, body.priority, body.max_retries) == ("UTC", "default", 0, 0)
    assert (body.retry_interval, body.misfire_grace_seconds, body.max_instances) == (1.0, 60.0, 1)
    assert (body.manual, body.coalesce, body.enabled) == (False, False, True)
    assert body.interval_seconds is None and body.timeout is None


@pytest.mark.parametrize("name", ["", "a/b", "a?b", "n" * 201, "tab\there", "é"])
def test_schedule_names_keep_to_what_a_path_segment_carries(name: str) -> None:
    assert "should match pattern" in refusal(ScheduleCreate, schedule(name=name))["name"]


@pytest.mark.parametrize(
    ("fields", "path", "message"),
    [
        ({"intervalSeconds": 0}, "intervalSeconds", "greater than or equal to 0.001"),
        ({"intervalSeconds": SECONDS_MAX + 1}, "intervalSeconds", "less than or equal to"),
        ({"everySeconds": 0}, "everySeconds", "greater than or equal to 0.001"),
        ({"maxInstances": 0}, "maxInstances", "greater than or equal to 1"),
        ({"maxInstances": INT4_MAX + 1}, "maxInstances", "less than or equal to 2147483647"),
        ({"maxRetries": 1001}, "maxRetries", "less than or equal to 1000"),
        ({"misfireGraceSeconds": -1}, "misfireGraceSeconds", "greater than or equal to 0"),
        ({"cron": "*" * 201}, "cron", "at most 200 characters"),
        ({"timezone": "T" * 101}, "timezone", "at most 100 characters"),
        ({"description": "d" * 2001}, "description", "at most 2000 characters"),
        ({"enabled": "yes"}, "enabled", "valid boolean"),
        ({"coalesce": 1}, "coalesce", "valid boolean"),
    ],
)
def test_schedule_fields_out_of_bounds_are_refused_by_field(
    fields: dict[str, Any], path: str, message: str
) -> None:
    assert message in refusal(ScheduleCreate, schedule(**fields))[path]


def test_every_seconds_is_the_old_name_of_interval_seconds() -> None:
    body = ScheduleCreate.model_validate(schedule(everySeconds=5))
    assert body.interval_seconds == 5 and body.every_seconds is None
    assert "interval_seconds" in body.model_fields_set
    assert "every_seconds" not in body.model_fields_set
    dumped = body.model_dump(exclude_unset=True)
    assert dumped["interval_seconds"] == 5 and "every_seconds" not in dumped


def test_both_interval_names_at_once_are_refused() -> None:
    problems = refusal(ScheduleCreate, schedule(everySeconds=5, intervalSeconds=5))
    assert problems == {
        "": "Value error, give intervalSeconds (everySeconds is its old name), not both"
    }


def test_an_update_changes_only_what_it_names() -> None:
    body = ScheduleUpdate.model_validate({"priority": 3, "cron": None})
    assert body.model_dump(exclude_unset=True) == {"priority": 3, "cron": None}
    assert ScheduleUpdate.model_validate({}).model_dump(exclude_unset=True) == {}


@pytest.mark.parametrize("field", ["cron", "intervalSeconds", "timeout", "description"])
def test_an_update_may_clear_the_nullable_fields(field: str) -> None:
    assert ScheduleUpdate.model_validate({field: None}).model_fields_set != set()


@pytest.mark.parametrize(
    "field",
    [
        "timezone",
        "payload",
        "queue",
        "priority",
        "maxRetries",
        "retryInterval",
        "misfireGraceSeconds",
        "coalesce",
        "maxInstances",
    ],
)
def test_an_update_refuses_null_where_a_value_is_required(field: str) -> None:
    assert refusal(ScheduleUpdate, {field: None}) == {
        field: "Value error, cannot be null: leave the field out to keep its value"
    }


def test_an_update_renames_every_seconds_and_clears_the_interval_with_it() -> None:
    renamed = ScheduleUpdate.model_validate({"everySeconds": 9})
    assert renamed.model_dump(exclude_unset=True) == {"interval_seconds": 9}
    cleared = ScheduleUpdate.model_validate({"everySeconds": None})
    assert cleared.model_dump(exclude_unset=True) == {"interval_seconds": None}
    assert "not both" in refusal(ScheduleUpdate, {"everySeconds": 1, "intervalSeconds": None})[""]


def test_an_update_refuses_fields_that_are_not_changeable() -> None:
    problems = refusal(ScheduleUpdate, {"name": "renamed", "taskType": "t.b", "enabled": False})
    assert set(problems) == {"name", "taskType", "enabled"}
    assert all(m == "Extra inputs are not permitted" for m in problems.values())


def test_a_trigger_body_takes_only_a_request_id() -> None:
    assert TriggerIn.model_validate({}).request_id is None
    assert TriggerIn.model_validate({"requestId": "fire-1"}).request_id == "fire-1"
    assert "should match pattern" in refusal(TriggerIn, {"requestId": ""})["requestId"]
    assert refusal(TriggerIn, {"at": "now"}) == {"at": "Extra inputs are not permitted"}


# ---- workflows -----------------------------------------------------------------------


def test_a_workflow_needs_a_step_and_defaults_to_serial_stop() -> None:
    body = WorkflowIn.model_validate({"name": "w", "steps": [{"name": "a", "taskType": "t"}]})
    assert (body.mode, body.on_failure, body.max_parallel) == ("serial", "stop", None)
    assert body.steps[0].after == [] and body.steps[0].payload == {}
    assert "at least 1 item" in refusal(WorkflowIn, {"name": "w", "steps": []})["steps"]


@pytest.mark.parametrize(
    ("fields", "path", "message"),
    [
        ({"mode": "random"}, "mode", "'serial' or 'parallel'"),
        ({"onFailure": "retry"}, "onFailure", "'stop' or 'continue'"),
        ({"maxParallel": 0}, "maxParallel", "greater than or equal to 1"),
        ({"name": "a/b"}, "name", "should match pattern"),
    ],
)
def test_workflow_fields_are_refused_by_field(
    fields: dict[str, Any], path: str, message: str
) -> None:
    body = {"name": "w", "steps": [{"name": "a", "taskType": "t"}], **fields}
    assert message in refusal(WorkflowIn, body)[path]


def test_a_bad_step_is_named_by_its_index_and_field() -> None:
    steps = [
        {"name": "a", "taskType": "t"},
        {"name": "", "taskType": "t", "after": "a"},
        {"name": "c", "taskType": "t", "retries": 2},
    ]
    problems = refusal(WorkflowIn, {"name": "w", "steps": steps})
    assert "at least 1 character" in problems["steps.1.name"]
    assert "valid list" in problems["steps.1.after"]
    assert problems["steps.2.retries"] == "Extra inputs are not permitted"


def test_nul_in_a_step_is_refused_naming_the_step_field() -> None:
    steps = [{"name": "a", "taskType": "t", "payload": {"x": "\x00"}}]
    problems = refusal(WorkflowIn, {"name": "w", "steps": steps})
    assert problems == {"steps.0": "Value error, payload contains the character U+0000"}


def test_a_step_definition_dumps_its_options_in_camel_case() -> None:
    step = StepDefinition(name="a", task_type="t")
    step.options.max_attempts = 2
    assert step.model_dump(by_alias=True, exclude_none=True) == {
        "name": "a",
        "taskType": "t",
        "after": [],
        "payload": {},
        "options": {"maxAttempts": 2},
    }


# ---- alerts, tokens, limits ----------------------------------------------------------


def test_alert_detail_keys_are_camel_cased_like_the_rest() -> None:
    alert = AlertOut(
        id=1,
        rule="queue_backlog",
        kind="queue",
        subject="default",
        state="firing",
        message="m",
        detail={"oldest_due_seconds": 3, "queue": "default"},
        fired_at=NOW,
    )
    assert alert.detail == {"oldestDueSeconds": 3, "queue": "default"}
    assert AlertOut.model_validate({**alert.model_dump(), "detail": [1]}).detail == [1]


def test_a_token_body_names_the_two_roles() -> None:
    assert TokenCreate.model_validate({"role": "viewer"}).name is None
    assert "'admin' or 'viewer'" in refusal(TokenCreate, {"role": "root"})["role"]
    assert "at least 1 character" in refusal(TokenCreate, {"role": "admin", "name": ""})["name"]
    assert refusal(TokenCreate, {"role": "admin", "name": "a\x00"}) == {
        "": "Value error, name contains the character U+0000"
    }


@pytest.mark.parametrize("concurrency", [0, -1, INT4_MAX + 1, "2", 1.0])
def test_a_queue_limit_is_a_positive_int4(concurrency: Any) -> None:
    assert "concurrency" in refusal(QueueLimitIn, {"concurrency": concurrency})
    assert QueueLimitIn.model_validate({"concurrency": INT4_MAX}).concurrency == INT4_MAX


def test_an_alert_rule_update_is_bounded_and_strict() -> None:
    body = AlertRuleUpdate.model_validate({"forSeconds": 0, "enabled": False})
    assert body.model_dump(exclude_unset=True) == {"for_seconds": 0, "enabled": False}
    assert "greater than or equal to 0" in refusal(AlertRuleUpdate, {"threshold": -1})["threshold"]
    assert "valid boolean" in refusal(AlertRuleUpdate, {"enabled": "false"})["enabled"]
    assert "less than or equal to" in refusal(AlertRuleUpdate, {"forSeconds": 1e12})["forSeconds"]
