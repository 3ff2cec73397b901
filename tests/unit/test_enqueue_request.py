"""EnqueueRequest refusals not covered by test_models.py, the JSON encoders,
Task rows and TaskOptions."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from tickbase.errors import InvalidTask, PayloadTooLarge
from tickbase.queue.models import (
    KEY_MAX,
    PAYLOAD_MAX_BYTES,
    PRIORITY_MAX,
    PRIORITY_MIN,
    TASK_TYPE_MAX,
    EnqueueRequest,
    Task,
    TaskOptions,
    encode_json,
    encode_payload,
    holds_nul,
)
from tickbase.types import TaskStatus


class _Text(str):
    pass


def _refusal(**kwargs: Any) -> InvalidTask:
    with pytest.raises(InvalidTask) as excinfo:
        EnqueueRequest(kwargs.pop("task_type", "example.task"), **kwargs)
    return excinfo.value


# ---- names -------------------------------------------------------------------------


@pytest.mark.parametrize("task_type", [["a", "list"], {"a": 1}, 42, b"bytes"])
def test_a_task_type_that_is_not_a_string_is_refused_naming_it(task_type: Any) -> None:
    error = _refusal(task_type=task_type)
    assert error.field == "task type"
    assert f"1 to {TASK_TYPE_MAX} characters" in error.reason


def test_task_type_length_bounds() -> None:
    assert EnqueueRequest("x" * TASK_TYPE_MAX).task_type == "x" * TASK_TYPE_MAX
    assert EnqueueRequest("x").task_type == "x"
    assert _refusal(task_type="y" * (TASK_TYPE_MAX + 1)).field == "task type"


@pytest.mark.parametrize("queue", ["a", "A-Z_0.9:x", "x" * 64, "md:binance.1h"])
def test_queue_names_of_the_allowed_characters_are_accepted(queue: str) -> None:
    assert EnqueueRequest("t", queue=queue).queue == queue


@pytest.mark.parametrize(
    "queue", ["q\n", "default\n", "q\t", "é", "q q", "q*", "q\x00", None, 5, ["default"]]
)
def test_a_queue_name_outside_the_pattern_is_refused_naming_it(queue: Any) -> None:
    error = _refusal(queue=queue)
    assert error.field == "queue name"
    assert error.value == queue


def test_a_refused_name_is_refused_again() -> None:
    # validated names are remembered; a refused one must never be
    for _ in range(2):
        assert _refusal(queue="bad queue").field == "queue name"
        assert _refusal(task_type="", queue="fresh-queue").field == "task type"
    # the queue of a refused request was not remembered either: still checked
    assert EnqueueRequest("t", queue="fresh-queue").queue == "fresh-queue"


# ---- priority ----------------------------------------------------------------------


@pytest.mark.parametrize("priority", [PRIORITY_MIN, 1, 500, PRIORITY_MAX])
def test_priorities_in_range_are_accepted(priority: int) -> None:
    assert EnqueueRequest("t", priority=priority).priority == priority


@pytest.mark.parametrize("priority", [PRIORITY_MIN - 1, PRIORITY_MAX + 1, 10**20, -(10**20)])
def test_priorities_out_of_range_are_refused(priority: int) -> None:
    error = _refusal(priority=priority)
    assert error.field == "priority"
    assert f"from {PRIORITY_MIN}" in error.reason and str(PRIORITY_MAX) in error.reason


@pytest.mark.parametrize("priority", [False, 1.0, "1", None, math.nan])
def test_priorities_that_are_not_plain_ints_are_refused(priority: Any) -> None:
    assert _refusal(priority=priority).field == "priority"


# ---- payload -----------------------------------------------------------------------


@pytest.mark.parametrize("payload", [None, [], "text", 1, ({"a": 1},), {"a"}])
def test_a_payload_that_is_not_a_dict_is_refused(payload: Any) -> None:
    error = _refusal(payload=payload)
    assert error.field == "payload"
    assert "JSON object" in error.reason


@pytest.mark.parametrize(
    "payload",
    [
        {"x": -math.inf},
        {"deep": {"list": [1, {"v": math.nan}]}},
        {"n": None, "x": math.nan},  # a real null beside the NaN
        {"at": datetime(2026, 1, 1, tzinfo=UTC)},  # aware datetimes too
        {"raw": b"bytes"},
        {"raw": bytearray(b"x")},
        {(1, 2): "tuple key"},
        {None: "None key"},
        {"text": _Text("x")},  # str subclasses are not silently turned into str
        {"big": 2**70},
        {"obj": object()},
    ],
)
def test_payload_values_json_cannot_hold_are_refused(payload: dict[Any, Any]) -> None:
    error = _refusal(payload=payload)
    assert error.field == "payload"
    assert "not JSON-encodable" in error.reason
    assert not isinstance(error, PayloadTooLarge)


@pytest.mark.parametrize(
    "payload", [{"s": "a\x00b"}, {"k\x00": 1}, {"xs": ["ok", ["\x00"]]}, {"d": {"e": "\x00"}}]
)
def test_the_nul_character_is_refused_anywhere_in_a_payload(payload: dict[str, Any]) -> None:
    error = _refusal(payload=payload)
    assert error.field == "payload"
    assert "U+0000" in error.reason


def test_the_text_of_a_nul_escape_is_not_a_nul() -> None:
    request = EnqueueRequest("t", {"s": "\\u0000"})
    assert request.payload_json == '{"s":"\\\\u0000"}'


def test_plain_json_values_are_accepted_as_sent() -> None:
    payload = {"i": -3, "f": 0.5, "b": True, "n": None, "s": "x", "l": [1, [2]], "d": {"e": {}}}
    request = EnqueueRequest("t", payload)
    assert request.payload_json == (
        '{"i":-3,"f":0.5,"b":true,"n":null,"s":"x","l":[1,[2]],"d":{"e":{}}}'
    )
    assert request.payload is payload


def test_enum_values_are_stored_as_their_values() -> None:
    assert EnqueueRequest("t", {"s": TaskStatus.RUNNING}).payload_json == '{"s":"running"}'


def _payload_of_json_size(size: int, char: str = "a") -> dict[str, str]:
    # {"x":"..."} is 8 bytes of JSON around the string
    width = len(char.encode())
    assert (size - 8) % width == 0
    return {"x": char * ((size - 8) // width)}


@pytest.mark.parametrize("char", ["a", "é", "€", "😀"])
def test_a_payload_at_the_limit_is_accepted_and_one_byte_over_refused(char: str) -> None:
    width = len(char.encode())
    at_limit = PAYLOAD_MAX_BYTES - (PAYLOAD_MAX_BYTES - 8) % width
    assert len(encode_payload(_payload_of_json_size(at_limit, char)).encode()) == at_limit
    over = _payload_of_json_size(at_limit + width, char)
    with pytest.raises(PayloadTooLarge) as excinfo:
        EnqueueRequest("t", over)
    error = excinfo.value
    assert error.field == "payload"
    assert error.size == at_limit + width > PAYLOAD_MAX_BYTES
    assert error.limit == PAYLOAD_MAX_BYTES
    assert "PAYLOAD_MAX_BYTES" in str(error)


def test_payload_size_counts_bytes_not_characters() -> None:
    # fewer characters than the limit, but more bytes once UTF-8 encoded
    payload = {"x": "€" * (PAYLOAD_MAX_BYTES // 3 + 10)}
    assert len(encode_json(payload, "payload")) < PAYLOAD_MAX_BYTES
    with pytest.raises(PayloadTooLarge):
        encode_payload(payload)


def test_encode_payload_names_the_field_it_is_given() -> None:
    with pytest.raises(PayloadTooLarge) as excinfo:
        encode_payload({"x": "a" * PAYLOAD_MAX_BYTES}, "step payload")
    assert excinfo.value.field == "step payload"
    with pytest.raises(InvalidTask) as invalid:
        encode_payload({"x": math.nan}, "step payload")
    assert invalid.value.field == "step payload"


def test_encode_json_takes_any_json_value_not_only_objects() -> None:
    assert encode_json([1, "a", None], "result") == '[1,"a",null]'
    assert encode_json("null", "result") == '"null"'
    assert encode_json(None, "result") == "null"
    assert encode_json((1, 2), "result") == "[1,2]"
    with pytest.raises(InvalidTask) as excinfo:
        encode_json(math.nan, "result")
    assert excinfo.value.field == "result"


def test_holds_nul_looks_through_keys_lists_and_tuples() -> None:
    assert holds_nul("\x00")
    assert holds_nul({"\x00": 1})
    assert holds_nul((1, ("\x00",)))
    assert not holds_nul({"a": ["b", 1, None, 2.5]})
    assert not holds_nul("\\u0000")


# ---- timing ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "run_at",
    [
        datetime(2026, 1, 1, tzinfo=UTC),
        datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=-5))),
        datetime(1999, 1, 1, tzinfo=UTC),  # in the past: runs now
    ],
)
def test_aware_run_at_is_accepted(run_at: datetime) -> None:
    assert EnqueueRequest("t", run_at=run_at).run_at == run_at


@pytest.mark.parametrize("delay", [0, 0.0, 1, 2.5, 86_400 * 365])
def test_non_negative_finite_delays_are_accepted(delay: float) -> None:
    assert EnqueueRequest("t", delay=delay).delay == delay


@pytest.mark.parametrize("delay", [-0.001, math.inf, -math.inf, "5", True])
def test_bad_delays_are_refused(delay: Any) -> None:
    error = _refusal(delay=delay)
    assert error.field == "delay"
    assert "finite number >= 0" in error.reason


def test_naive_run_at_is_refused_even_with_a_delay() -> None:
    # the run_at problem is named first
    assert _refusal(run_at=datetime(2026, 1, 1), delay=1).field == "run_at"


# ---- attempts, retry delay, timeout ------------------------------------------------


@pytest.mark.parametrize("max_attempts", [0, -1, 1.0, True, "3", None])
def test_bad_max_attempts_are_refused(max_attempts: Any) -> None:
    assert _refusal(max_attempts=max_attempts).field == "max_attempts"


def test_max_attempts_above_one_is_accepted() -> None:
    assert EnqueueRequest("t", max_attempts=25).max_attempts == 25


@pytest.mark.parametrize("retry_delay", [0, 0.0, 1, 2.5, 3600])
def test_retry_delays_of_zero_or_more_are_accepted(retry_delay: float) -> None:
    assert EnqueueRequest("t", retry_delay=retry_delay).retry_delay == retry_delay


@pytest.mark.parametrize("retry_delay", [-1, math.nan, math.inf, "1", None, True])
def test_bad_retry_delays_are_refused(retry_delay: Any) -> None:
    error = _refusal(retry_delay=retry_delay)
    assert error.field == "retry_delay"
    assert ">= 0" in error.reason


@pytest.mark.parametrize("timeout", [0.001, 1, 30.0])
def test_positive_timeouts_are_accepted(timeout: float) -> None:
    assert EnqueueRequest("t", timeout=timeout).timeout == timeout


@pytest.mark.parametrize("timeout", [0, 0.0, -1, math.inf, math.nan, "30", False])
def test_bad_timeouts_are_refused(timeout: Any) -> None:
    error = _refusal(timeout=timeout)
    assert error.field == "timeout"
    assert "> 0" in error.reason


# ---- keys and concurrency ----------------------------------------------------------


@pytest.mark.parametrize("name", ["dedupe_key", "request_id", "concurrency_key"])
def test_keys_of_1_to_key_max_characters_are_accepted(name: str) -> None:
    for value in ("k", "k" * KEY_MAX):
        assert getattr(EnqueueRequest("t", **{name: value}), name) == value


@pytest.mark.parametrize("name", ["dedupe_key", "request_id", "concurrency_key"])
@pytest.mark.parametrize("value", ["", "k" * (KEY_MAX + 1), 7, b"key"])
def test_bad_keys_are_refused_naming_the_key(name: str, value: Any) -> None:
    error = _refusal(**{name: value})
    assert error.field == name
    assert f"1 to {KEY_MAX} characters" in error.reason


def test_the_bad_key_is_named_when_another_is_good() -> None:
    assert _refusal(dedupe_key="ok", concurrency_key="").field == "concurrency_key"


@pytest.mark.parametrize("limit", [0, -1, 1.0, True, "2"])
def test_bad_concurrency_limits_are_refused(limit: Any) -> None:
    error = _refusal(concurrency_key="k", concurrency_limit=limit)
    assert error.field == "concurrency_limit"
    assert ">= 1" in error.reason


def test_a_concurrency_limit_of_one_or_more_is_accepted() -> None:
    request = EnqueueRequest("t", concurrency_key="acct:1", concurrency_limit=3)
    assert (request.concurrency_key, request.concurrency_limit) == ("acct:1", 3)


def test_defaults() -> None:
    request = EnqueueRequest("t")
    assert request.payload == {} and request.payload_json == "{}"
    assert request.queue == "default" and request.priority == 0
    assert request.max_attempts == 1 and request.retry_delay == 1.0
    assert request.run_at is request.delay is request.timeout is None
    assert request.dedupe_key is request.request_id is request.concurrency_key is None


# ---- TaskOptions -------------------------------------------------------------------


def test_task_options_as_dict_is_in_declaration_order() -> None:
    options = TaskOptions(queue="md", priority=5, max_attempts=2, retry_delay=0.5, timeout=9.0)
    assert list(options.as_dict().items()) == [
        ("queue", "md"),
        ("priority", 5),
        ("max_attempts", 2),
        ("retry_delay", 0.5),
        ("timeout", 9.0),
    ]


def test_task_options_round_trip_through_a_mapping() -> None:
    options = TaskOptions(queue="md", priority=5, max_attempts=2, retry_delay=0.0, timeout=9.0)
    assert TaskOptions.from_mapping(options.as_dict()) == options
    assert TaskOptions.from_mapping({}) == TaskOptions()
    # a falsy but present value is kept (only None means "default")
    assert TaskOptions.from_mapping({"priority": 0, "retry_delay": 0.0}).retry_delay == 0.0


def test_task_options_are_frozen() -> None:
    with pytest.raises(AttributeError):
        TaskOptions().queue = "other"  # type: ignore[misc]


# ---- Task rows ---------------------------------------------------------------------


def _row(**changes: Any) -> dict[str, Any]:
    t0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    row: dict[str, Any] = {
        "id": 7,
        "task_type": "tickbase.echo",
        "queue": "default",
        "priority": 3,
        "status": "succeeded",
        "payload": {"x": 1},
        "result": {"ok": True},
        "error": None,
        "attempts": 1,
        "max_attempts": 3,
        "retry_delay": 1.5,
        "timeout": None,
        "run_at": t0,
        "created_at": t0 - timedelta(seconds=5),
        "started_at": t0 + timedelta(seconds=1),
        "finished_at": t0 + timedelta(seconds=3.5),
        "lease_expires_at": None,
        "node_id": "node-a",
        "request_id": "req-1",
        "dedupe_key": None,
        "concurrency_key": None,
        "schedule_id": None,
        "fire_at": None,
        "workflow_run_id": None,
        "step": None,
        "progress": None,
        "cancel_requested": False,
        "inputs": None,
        "concurrency_limit": None,
        "rate_limited": False,
        "some_future_column": "ignored",
    }
    row.update(changes)
    return row


def test_task_from_row_reads_every_column_and_the_status_as_an_enum() -> None:
    row = _row()
    task = Task.from_row(row)
    assert task.status is TaskStatus.SUCCEEDED
    for name in Task.__dataclass_fields__:
        expected = TaskStatus(row[name]) if name == "status" else row[name]
        assert getattr(task, name) == expected, name
    assert task.duration == 2.5


def test_task_from_row_refuses_an_unknown_status() -> None:
    with pytest.raises(ValueError):
        Task.from_row(_row(status="exploded"))


def test_task_to_dict_is_json_ready_and_round_trips() -> None:
    row = _row()
    out = Task.from_row(row).to_dict()
    assert set(out) == set(Task.__dataclass_fields__)
    assert out["status"] == "succeeded" and type(out["status"]) is str
    assert out["run_at"] == "2026-03-01T12:00:00+00:00"
    assert out["finished_at"] == "2026-03-01T12:00:03.500000+00:00"
    assert out["lease_expires_at"] is None
    assert out["payload"] == {"x": 1} and out["result"] == {"ok": True}
    encode_json(out, "task")  # plain JSON all the way down
    back = {
        name: datetime.fromisoformat(value)
        if name.endswith("_at") and isinstance(value, str)
        else value
        for name, value in out.items()
    }
    assert Task.from_row(back) == Task.from_row(row)


def test_task_duration_needs_both_ends() -> None:
    assert Task.from_row(_row(finished_at=None)).duration is None
    assert Task.from_row(_row(started_at=None)).duration is None
