"""Enqueue requests are validated before anything reaches the database."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pytest

from tickbase.errors import InvalidSchedule, InvalidTask
from tickbase.queue.models import (
    ENQUEUE_OPTIONS,
    TASK_OPTIONS,
    EnqueueRequest,
    TaskOptions,
    encode_json,
)
from tickbase.scheduler.models import ScheduleSpec


@pytest.mark.parametrize(
    ("kwargs", "field", "fragment"),
    [
        ({"payload": {"x": {1, 2}}}, "payload", "not JSON-encodable"),
        ({"payload": {"x": math.nan}}, "payload", "not JSON-encodable"),
        ({"payload": {"x": math.inf}}, "payload", "not JSON-encodable"),
        ({"payload": {1: "int key"}}, "payload", "not JSON-encodable"),
        ({"payload": {"at": datetime(2026, 1, 1)}}, "payload", "not JSON-encodable"),
        ({"payload": ["not", "a", "dict"]}, "payload", "must be a JSON object"),
        ({"queue": "bad queue"}, "queue name", "letters, digits"),
        ({"queue": "q/slash"}, "queue name", "letters, digits"),
        ({"queue": ""}, "queue name", "letters, digits"),
        ({"queue": "x" * 65}, "queue name", "letters, digits"),
        ({"priority": -1}, "priority", "from 0"),
        ({"priority": 1001}, "priority", "from 0"),
        ({"priority": 1.5}, "priority", "integer"),
        ({"priority": True}, "priority", "integer"),
        ({"run_at": "tomorrow"}, "run_at", "must be a datetime"),
        ({"run_at": 1_700_000_000}, "run_at", "must be a datetime"),
        ({"run_at": datetime(2026, 1, 1)}, "run_at", "timezone-aware"),
        ({"delay": -1}, "delay", ">= 0"),
        ({"delay": math.nan}, "delay", "finite"),
        ({"max_attempts": 0}, "max_attempts", ">= 1"),
        ({"retry_delay": -0.5}, "retry_delay", ">= 0"),
        ({"timeout": 0}, "timeout", "> 0"),
        ({"dedupe_key": ""}, "dedupe_key", "1 to 200"),
        ({"request_id": 42}, "request_id", "1 to 200"),
    ],
)
def test_bad_input_is_refused_naming_the_field(
    kwargs: dict[str, Any], field: str, fragment: str
) -> None:
    with pytest.raises(InvalidTask) as excinfo:
        EnqueueRequest("example.task", **kwargs)
    assert excinfo.value.field == field
    assert field in str(excinfo.value)
    assert fragment in str(excinfo.value)


@pytest.mark.parametrize("task_type", ["", "x" * 201, None])
def test_bad_task_type_is_refused(task_type: Any) -> None:
    with pytest.raises(InvalidTask, match="task type"):
        EnqueueRequest(task_type)


def test_run_at_and_delay_are_exclusive() -> None:
    with pytest.raises(InvalidTask, match="either run_at or delay"):
        EnqueueRequest("t", run_at=datetime.now(UTC), delay=1)


def test_valid_request_carries_its_payload_as_json() -> None:
    request = EnqueueRequest("t", {"symbol": "ESZ5", "n": None, "text": "null"}, priority=1000)
    assert request.payload_json == '{"symbol":"ESZ5","n":null,"text":"null"}'


def test_encode_json_keeps_unicode_and_refuses_nan_inside_lists() -> None:
    assert encode_json({"name": "沪深300"}, "payload") == '{"name":"沪深300"}'
    with pytest.raises(InvalidTask):
        encode_json({"xs": [1.0, None, math.nan]}, "payload")


@pytest.mark.parametrize("seconds", [1e-300, 0.0009, 1e300, float("inf")])
def test_interval_out_of_range_is_refused(seconds: float) -> None:
    # a sub-microsecond interval could never advance; a huge one overflows dates
    with pytest.raises(InvalidSchedule, match=r"must be a number of seconds from 0\.001"):
        ScheduleSpec.build("s", "t", every=seconds)


def test_huge_durations_are_refused() -> None:
    with pytest.raises(InvalidSchedule, match="at most"):
        ScheduleSpec.build("s", "t", every=60, misfire_grace_seconds=1e300)


def test_task_options_are_enqueue_options_with_the_same_defaults() -> None:
    # One definition: each task option is an EnqueueRequest field of that name
    # and default, so a task type's defaults and one enqueue cannot drift.
    request = EnqueueRequest("tickbase.echo")
    assert TASK_OPTIONS <= ENQUEUE_OPTIONS
    assert {name: getattr(request, name) for name in TASK_OPTIONS} == TaskOptions().as_dict()
    assert "payload" not in ENQUEUE_OPTIONS and "task_type" not in ENQUEUE_OPTIONS


def test_task_options_from_a_published_mapping() -> None:
    published = {"queue": "md", "timeout": None, "handled": True, "max_attempts": 3}
    assert TaskOptions.from_mapping(published) == TaskOptions(queue="md", max_attempts=3)
