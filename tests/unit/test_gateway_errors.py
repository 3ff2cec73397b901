"""Errors become the right HTTP status and code; request states read as the client sees them.

Proven here, without a server: every tickbase error maps to one status and
stable code (subclasses before their bases), database unavailability is 503
with ``Retry-After``, anything unexpected is a 500 that never quotes the
exception, 401s name the Bearer scheme; validation details carry dotted
paths; a task's state becomes the request's status and client-facing error
(no task id in it); a re-sent request is recognised field by field; the
WebSocket's per-user counters never go below zero nor keep empty entries;
``Allow`` lists every method of a path; the server's own error bytes are a
well-formed HTTP response.
"""

from __future__ import annotations

import dataclasses
import resource
from datetime import UTC, date, datetime
from typing import Any

import orjson
import psycopg
import pytest
from fastapi import APIRouter, FastAPI
from psycopg_pool import PoolTimeout

from tickbase.errors import (
    ConfigurationError,
    DatabaseError,
    InvalidAlert,
    InvalidCredentials,
    InvalidSchedule,
    InvalidTask,
    InvalidToken,
    InvalidTransition,
    InvalidWorkflow,
    MigrationError,
    PayloadTooLarge,
    ResultTimeout,
    ScheduleNotFound,
    TaskFailed,
    TaskNotFound,
    TickbaseError,
    UnknownTaskType,
    WorkflowRunNotFound,
)
from tickbase.gateway.errors import RETRY_AFTER_SECONDS, ApiError, api_error, respond
from tickbase.gateway.errors import validation_details as details_of
from tickbase.gateway.hub import TaskState
from tickbase.gateway.routing import allowed_methods
from tickbase.gateway.server import FD_RESERVE, ServerLimits, _error_bytes, bounded_protocol
from tickbase.gateway.service import request_state, same_request, task_error
from tickbase.gateway.ws import WsLimits, _json_default
from tickbase.queue.models import EnqueueRequest, Task
from tickbase.settings import load_settings
from tickbase.types import TaskStatus

NOW = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)

# ---- error mapping -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (InvalidCredentials("session expired"), 401, "UNAUTHORIZED"),
        (TaskNotFound(7), 404, "NOT_FOUND"),
        (ScheduleNotFound("nightly"), 404, "NOT_FOUND"),
        (WorkflowRunNotFound(3), 404, "NOT_FOUND"),
        (UnknownTaskType("t.x"), 422, "UNKNOWN_TASK_TYPE"),
        (InvalidTransition(7, "succeeded", "cancel"), 409, "CONFLICT"),
        (PayloadTooLarge("payload", 600_000, 524_288), 413, "PAYLOAD_TOO_LARGE"),
        (InvalidTask("priority", 5000, "must be at most 1000"), 422, "INVALID_TASK"),
        (InvalidSchedule("cron", "* *", "five fields"), 422, "INVALID_SCHEDULE"),
        (InvalidWorkflow("w", "a cycle"), 422, "INVALID_WORKFLOW"),
        (InvalidAlert("threshold", -1, "must be positive"), 422, "INVALID_ALERT"),
        (InvalidToken("role", "root", "admin or viewer"), 422, "INVALID_INPUT"),
        (ConfigurationError("bad setting"), 422, "INVALID_INPUT"),
        (TaskFailed(7, "failed", None), 409, "TASK_FAILED"),
        (ResultTimeout(7, 1.0, "running"), 409, "TASK_FAILED"),
    ],
)
def test_each_tickbase_error_has_its_status_and_code(
    exc: Exception, status: int, code: str
) -> None:
    error = api_error(exc)
    assert (error.status, error.code, error.message) == (status, code, str(exc))
    assert error.details is None


def test_a_payload_too_large_is_413_not_the_422_of_its_base_class() -> None:
    too_large = PayloadTooLarge("payload", 10, 5)
    assert isinstance(too_large, InvalidTask)
    assert api_error(too_large).status == 413


@pytest.mark.parametrize(
    "exc",
    [
        DatabaseError("connection refused"),
        MigrationError("pending migrations"),
        psycopg.OperationalError("server closed the connection unexpectedly"),
        psycopg.InterfaceError("the connection is closed"),
        PoolTimeout("couldn't get a connection after 30.00 sec"),
    ],
)
def test_database_unavailability_is_503_without_its_details(exc: Exception) -> None:
    error = api_error(exc)
    assert (error.status, error.code) == (503, "UNAVAILABLE")
    assert error.message == "the database is unavailable: retry shortly"
    assert str(exc) not in error.message


def test_other_tickbase_errors_are_400_with_their_message() -> None:
    error = api_error(TickbaseError("something the client asked for is wrong"))
    assert (error.status, error.code) == (400, "BAD_REQUEST")
    assert error.message == "something the client asked for is wrong"


@pytest.mark.parametrize("exc", [RuntimeError("secret=hunter2"), KeyError("dsn"), ValueError("x")])
def test_unexpected_errors_are_500_and_never_quoted(exc: Exception) -> None:
    error = api_error(exc)
    assert (error.status, error.code) == (500, "INTERNAL")
    assert error.message == "internal error (logged on the server)"


def test_an_api_error_is_answered_as_it_is() -> None:
    original = ApiError(418, "TEAPOT", "short and stout", {"spout": True})
    assert api_error(original) is original
    assert original.body() == {
        "error": {"code": "TEAPOT", "message": "short and stout", "details": {"spout": True}}
    }
    assert str(original) == "short and stout"


def test_a_401_names_the_bearer_scheme_and_a_503_when_to_retry() -> None:
    unauthorized = respond(ApiError(401, "UNAUTHORIZED", "missing credentials"))
    assert unauthorized.status_code == 401
    assert unauthorized.headers["www-authenticate"] == "Bearer"
    unavailable = respond(ApiError(503, "UNAVAILABLE", "retry"), {"Connection": "close"})
    assert unavailable.headers["retry-after"] == str(RETRY_AFTER_SECONDS)
    assert unavailable.headers["connection"] == "close"
    plain = respond(ApiError(404, "NOT_FOUND", "no task 7"))
    assert "www-authenticate" not in plain.headers and "retry-after" not in plain.headers
    assert orjson.loads(plain.body) == {
        "error": {"code": "NOT_FOUND", "message": "no task 7", "details": None}
    }


def test_validation_details_are_dotted_paths_with_messages() -> None:
    errors = [
        {"loc": ("body", "steps", 2, "name"), "msg": "Field required"},
        {"loc": (), "msg": "give runAt or delaySeconds, not both"},
        {"loc": ("query", "limit")},
    ]
    assert details_of(errors) == [
        {"path": "body.steps.2.name", "message": "Field required"},
        {"path": "", "message": "give runAt or delaySeconds, not both"},
        {"path": "query.limit", "message": "invalid"},
    ]
    assert details_of([]) == []


# ---- request states ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "shown"),
    [("pending", "pending"), ("retrying", "pending"), ("running", "running")],
)
def test_an_unfinished_task_shows_its_status_and_nothing_else(status: str, shown: str) -> None:
    state = request_state("r1", "tasks.submit", TaskState(7, status, result=1, error={"m": 1}))
    assert state.model_dump(by_alias=True) == {
        "requestId": "r1",
        "action": "tasks.submit",
        "status": shown,
        "data": None,
        "error": None,
    }


def test_a_succeeded_task_shows_its_result_as_data() -> None:
    state = request_state("r1", "tasks.submit", TaskState(7, "succeeded", result={"sum": 3}))
    assert (state.status, state.data, state.error) == ("succeeded", {"sum": 3}, None)


def test_a_failed_task_shows_its_error_type_and_message_but_not_its_traceback() -> None:
    error = {"type": "RuntimeError", "message": "exploded", "traceback": "Traceback ..."}
    state = request_state("r1", "tasks.submit", TaskState(7, "failed", error=error))
    assert state.status == "failed" and state.data is None
    assert state.error is not None
    assert state.error.model_dump() == {
        "code": "TASK_FAILED",
        "message": "exploded",
        "details": {"type": "RuntimeError"},
    }
    assert "7" not in orjson.dumps(state.model_dump(by_alias=True)).decode()


def test_a_failure_without_a_stored_error_still_reads_as_one() -> None:
    for stored in (None, "not a dict", {"type": "Timeout"}):
        body = task_error(TaskState(7, "failed", error=stored))
        assert body.code == "TASK_FAILED" and body.message == "the task failed"
        assert body.details == {"type": stored["type"] if isinstance(stored, dict) else None}


def test_a_cancelled_task_says_cancelled_and_why_when_known() -> None:
    bare = task_error(TaskState(7, "cancelled"))
    assert (bare.code, bare.message, bare.details) == ("TASK_CANCELLED", "cancelled", None)
    why = {"type": "Cancelled", "message": "cancelled by its requester"}
    told = task_error(TaskState(7, "cancelled", error=why))
    assert (told.message, told.details) == ("cancelled by its requester", {"type": "Cancelled"})
    state = request_state("r", "tasks.cancel", TaskState(7, "cancelled", error=why))
    assert state.status == "cancelled" and state.error == told


def test_only_the_three_final_states_are_final() -> None:
    assert {s for s in TaskStatus if TaskState(1, str(s)).final} == {
        TaskStatus.SUCCEEDED,
        TaskStatus.FAILED,
        TaskStatus.CANCELLED,
    }


def stored(request: EnqueueRequest, **changes: Any) -> Task:
    """The task row ``request`` would have produced (then ``changes``)."""
    fields: dict[str, Any] = {f.name: None for f in dataclasses.fields(Task)}
    fields.update(
        id=7,
        task_type=request.task_type,
        queue=request.queue,
        priority=request.priority,
        status=TaskStatus.PENDING,
        payload=request.payload,
        attempts=0,
        max_attempts=request.max_attempts,
        retry_delay=request.retry_delay,
        timeout=request.timeout,
        run_at=request.run_at or NOW,
        created_at=NOW,
        dedupe_key=request.dedupe_key,
        cancel_requested=False,
    )
    fields.update(changes)
    return Task(**fields)


def test_a_resent_request_is_the_same_whatever_its_key_order() -> None:
    request = EnqueueRequest("t.add", {"a": 1, "b": 2}, max_attempts=2, retry_delay=1)
    assert same_request(stored(request, payload={"b": 2, "a": 1}), request)
    # A relative delay cannot be compared with the stored time: it is not.
    delayed = dataclasses.replace(request, delay=30.0)
    assert same_request(stored(request, run_at=datetime(2031, 1, 1, tzinfo=UTC)), delayed)


@pytest.mark.parametrize(
    "change",
    [
        {"task_type": "t.other"},
        {"payload": {"a": 1, "b": 3}},
        {"queue": "other"},
        {"priority": 5},
        {"max_attempts": 3},
        {"retry_delay": 2.0},
        {"timeout": 9.0},
        {"dedupe_key": "k"},
        {"run_at": datetime(2031, 1, 1, tzinfo=UTC)},
    ],
)
def test_a_request_differing_in_any_field_is_another_request(change: dict[str, Any]) -> None:
    request = EnqueueRequest("t.add", {"a": 1, "b": 2}, run_at=NOW, max_attempts=2)
    assert same_request(stored(request), request)
    assert not same_request(stored(request, **change), request)


# ---- WebSocket counters and JSON ---------------------------------------------------------


def test_a_user_gets_connections_up_to_the_cap_and_others_are_counted_apart() -> None:
    limits = WsLimits(max_connections_per_user=2)
    assert [limits.acquire_connection("7") for _ in range(3)] == [True, True, False]
    assert limits.connections == {"7": 2}  # the refused one was not counted
    assert limits.acquire_connection("8")
    limits.release_connection("7")
    assert limits.acquire_connection("7") and not limits.acquire_connection("7")


def test_released_counts_never_go_below_zero_nor_keep_an_entry() -> None:
    limits = WsLimits(max_in_flight_per_user=1)
    assert limits.acquire_request("7")
    limits.release_request("7")
    assert limits.in_flight == {}
    limits.release_request("7")  # one release too many: nothing to release
    limits.release_request("never-seen")
    assert limits.in_flight == {}
    assert limits.acquire_request("7") and not limits.acquire_request("7")


def test_a_cap_of_zero_refuses_everything() -> None:
    limits = WsLimits(max_connections_per_user=0, max_in_flight_per_user=0)
    assert not limits.acquire_connection("7") and not limits.acquire_request("7")
    assert limits.connections == {} and limits.in_flight == {}


def test_frames_carry_times_as_iso_8601_and_refuse_other_objects() -> None:
    assert _json_default(NOW) == "2030-01-02T03:04:05+00:00"
    assert _json_default(date(2030, 1, 2)) == "2030-01-02"
    with pytest.raises(TypeError, match="not JSON-encodable: object"):
        _json_default(object())


# ---- routing and server bounds ---------------------------------------------------------


def routed_app() -> FastAPI:
    app = FastAPI()
    router = APIRouter()

    @router.get("/things/{name}")
    async def read(name: str) -> str:
        return name

    @router.patch("/things/{name}")
    async def change(name: str) -> str:
        return name

    @app.delete("/things/{name}")
    async def remove(name: str) -> str:
        return name

    app.include_router(router)
    return app


def scope_of(path: str, method: str = "OPTIONS") -> dict[str, Any]:
    return {"type": "http", "path": path, "method": method, "root_path": ""}


def test_allow_lists_the_methods_of_every_route_at_the_path() -> None:
    routes = routed_app().router.routes
    assert allowed_methods(routes, scope_of("/things/a")) == ["DELETE", "GET", "OPTIONS", "PATCH"]
    assert allowed_methods(routes, scope_of("/nowhere")) is None
    assert allowed_methods(routes, scope_of("/things")) is None


def test_server_limits_come_from_the_settings_of_the_same_names() -> None:
    settings = load_settings(
        database_url="postgresql://127.0.0.1/x",
        max_connections=12,
        header_timeout=1.5,
        max_header_bytes=2048,
        keep_alive_timeout=2.0,
        max_body_bytes=4096,
        body_timeout=3.0,
    )
    assert ServerLimits.from_settings(settings) == ServerLimits(12, 1.5, 2048, 2.0, 4096, 3.0)


def test_the_connection_cap_leaves_descriptors_for_the_database() -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert ServerLimits(max_connections=1).effective_connections() == 1
    huge = ServerLimits(max_connections=10**9).effective_connections()
    if soft != resource.RLIM_INFINITY:
        assert huge == max(1, soft - FD_RESERVE)
    protocol = bounded_protocol(ServerLimits(max_connections=3, header_timeout=0.5))
    assert protocol.connection_cap == 3 and protocol.limits.header_timeout == 0.5


def test_the_servers_own_refusals_are_whole_http_responses_in_the_error_shape() -> None:
    raw = _error_bytes(b"431 Request Header Fields Too Large", "HEADERS_TOO_LARGE", "too big")
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 431 Request Header Fields Too Large"
    headers = dict(line.split(b": ", 1) for line in lines[1:])
    assert headers[b"connection"] == b"close"
    assert headers[b"content-type"] == b"application/json"
    assert int(headers[b"content-length"]) == len(body)
    assert orjson.loads(body) == {
        "error": {"code": "HEADERS_TOO_LARGE", "message": "too big", "details": None}
    }
