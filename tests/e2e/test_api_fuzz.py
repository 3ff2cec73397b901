"""Property-based fuzzing of the whole HTTP API from its own OpenAPI document.

A real gateway (``python -m tickbase api``) serves a fresh database; schemathesis
loads ``/openapi.json`` from it and, for every operation, sends the schema's
examples, its coverage cases (boundaries, missing and wrong-typed fields) and
generated inputs, valid and invalid, with an admin token. Every response must
not be a server error, must have a documented status and content type, must
match the documented schema, and an input that violates the schema must be
refused. A failure shows the reproducing ``curl`` command and whatever the
server logged while answering it (the traceback of a 500).

The generation is derandomized (the same inputs on every run) and bounded
(``MAX_EXAMPLES`` generated inputs per operation, on top of the coverage
cases), so that the run takes seconds and fails the same way twice. A bounded
run rarely draws the few values that break a server (a NUL character, which
PostgreSQL text and jsonb refuse; a digit that is not ASCII; an integer past
a column's range), so ``HOSTILE`` sends those on purpose: each one was a 500
(or a wrong-typed value silently coerced) found by longer fuzzing runs.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import psycopg
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis.control import current_build_context
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from tests.conftest import migrated_database
from tests.e2e.conftest import REPO, run_cli, tickbase_env
from tests.support.gateway import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

MAX_EXAMPLES = 25  # generated inputs per operation (the coverage cases come on top)
STARTUP_SECONDS = 30.0
CAMEL = re.compile(r"^[a-z][a-zA-Z0-9]*$")
API = "/api/v1"
NUL = "a\x00b"  # PostgreSQL text and jsonb cannot hold U+0000
INT4_PAST = 2**31  # one past an int4 column
TARGET = "fuzz-target"  # a schedule the hostile requests change
STEP = {"name": "a", "taskType": "tickbase.echo"}

CHECKS = [
    # No input produces a 500.
    not_a_server_error,
    # Every status, content type, header and body is the documented one.
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    # An input the schema forbids is refused (with a 4xx), not silently coerced.
    negative_data_rejection,
    # A method the path does not serve is a 405 that names the allowed ones.
    unsupported_method,
]
FUZZ_SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


@dataclass
class Gateway:
    """A gateway process serving a test database."""

    url: str
    token: str
    log: Path
    process: subprocess.Popen[bytes]
    session: requests.Session = field(default_factory=requests.Session)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def log_size(self) -> int:
        return self.log.stat().st_size

    def log_since(self, offset: int) -> str:
        with self.log.open("rb") as output:
            output.seek(offset)
            return output.read().decode(errors="replace")

    def show_log_on_failure(self, offset: int, label: str) -> None:
        """Print what the gateway logged since ``offset`` (a 500's traceback).

        Printed for the minimal failing input only, the replay Hypothesis runs
        once shrinking is done, so it shows as the failure's captured output.
        """
        logged = self.log_since(offset).strip()
        if logged and current_build_context().is_final:
            print(f"gateway output while answering {label}:\n{logged}")


@pytest.fixture(scope="module")
def fuzz_database_url(server_url: str, template_db: str) -> Iterator[str]:
    """A fresh, migrated database shared by the module's tests (one gateway for all)."""
    with migrated_database(server_url, template_db, "fuzz") as url:
        yield url


@pytest.fixture(scope="module")
def gateway(fuzz_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """``tickbase api`` on a free local port, with an admin token, until the module ends."""
    made = run_cli("tokens", "create", "--role", "admin", "--json", database_url=fuzz_database_url)
    assert made.returncode == 0, made.stderr
    token = json.loads(made.stdout)["token"]

    port = free_port()
    log = tmp_path_factory.mktemp("gateway") / "server.log"
    # The output goes to a file, not a pipe: a pipe nobody reads would block
    # the server once a run of tracebacks fills it.
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "tickbase", "api", "--host", "127.0.0.1", "--port", str(port)],
            env=tickbase_env(fuzz_database_url),
            cwd=REPO,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    served = Gateway(f"http://127.0.0.1:{port}", token, log, process)
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            if process.poll() is not None:
                pytest.fail(f"the gateway exited with {process.returncode}:\n{served.log_since(0)}")
            try:
                if httpx.get(f"{served.url}/readyz", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"the gateway was not ready in {STARTUP_SECONDS}s:\n{served.log_since(0)}"
                )
            time.sleep(0.1)
        yield served
    finally:
        served.session.close()
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def call(gateway: Gateway, method: str, path: str, **kwargs: Any) -> requests.Response:
    """One request on a fresh connection (the server drops a connection after a 500)."""
    return requests.request(
        method, f"{gateway.url}{API}{path}", headers=gateway.headers, timeout=10, **kwargs
    )


def schedule(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "taskType": "tickbase.echo", "manual": True, **fields}


@pytest.fixture(scope="module")
def openapi(gateway: Gateway) -> dict[str, Any]:
    response = httpx.get(f"{gateway.url}/openapi.json", timeout=10.0)
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


@pytest.fixture(scope="module")
def api_schema(gateway: Gateway) -> schemathesis.BaseSchema:
    """The gateway's own OpenAPI document, loaded over HTTP, configured for the fuzz run."""
    loaded = schemathesis.openapi.from_url(f"{gateway.url}/openapi.json")
    loaded.config.update(base_url=gateway.url, headers=gateway.headers, request_timeout=30)
    loaded.config.generation.update(max_examples=MAX_EXAMPLES, deterministic=True, database="none")
    return loaded


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@FUZZ_SETTINGS
def test_fuzz_every_operation(case: schemathesis.Case, gateway: Gateway) -> None:
    """No input makes a 500, and every response is the one the schema documents."""
    offset = gateway.log_size()
    try:
        case.call_and_validate(session=gateway.session, checks=CHECKS)
    except BaseException:  # schemathesis' FailureGroup is a BaseExceptionGroup
        gateway.show_log_on_failure(offset, case.operation.label)
        raise


def test_openapi_bodies_are_camel_case(openapi: dict[str, Any]) -> None:
    """Body fields are camelCase on the wire: no snake_case property in any schema."""
    schemas: dict[str, Any] = openapi["components"]["schemas"]
    assert {
        "taskType",
        "payload",
        "queue",
        "priority",
        "delaySeconds",
        "runAt",
        "maxAttempts",
        "retryDelay",
        "timeout",
        "dedupeKey",
        "requestId",
    } == set(schemas["TaskSubmit"]["properties"])
    assert {"taskType", "intervalSeconds", "maxRetries", "misfireGraceSeconds"} <= set(
        schemas["ScheduleCreate"]["properties"]
    )
    assert "nextCursor" in schemas["TaskPage"]["properties"]

    def property_names(node: Any, where: str) -> Iterator[tuple[str, str]]:
        if isinstance(node, dict):
            for name in node.get("properties", {}):
                yield where, name
            for key, child in node.items():
                yield from property_names(child, f"{where}.{key}")
        elif isinstance(node, list):
            for index, child in enumerate(node):
                yield from property_names(child, f"{where}[{index}]")

    not_camel = [
        f"{where}: {name}"
        for where, name in property_names(schemas, "components.schemas")
        if not CAMEL.match(name)
    ]
    assert not not_camel, "\n".join(not_camel)
    # FastAPI's own validation error shape (loc/msg/type) is never answered.
    assert not {"HTTPValidationError", "ValidationError"} & set(schemas)

    query_names = [
        f"{method.upper()} {path}: {parameter['name']}"
        for path, operations in openapi["paths"].items()
        for method, operation in operations.items()
        for parameter in operation.get("parameters", [])
        if parameter["in"] == "query" and not CAMEL.match(parameter["name"])
    ]
    assert not query_names, "\n".join(query_names)


def snake_case_keys(value: Any, where: str) -> Iterator[str]:
    """Keys of a JSON value that are not camelCase, but for free-form data (payloads,
    results, an alert's detail: e.g. leader-missing fires when a slow run passes 30 s)."""
    if isinstance(value, dict):
        for key, child in value.items():
            if not CAMEL.match(str(key)):
                yield f"{where}.{key}"
            if key not in ("payload", "result", "detail"):
                yield from snake_case_keys(child, f"{where}.{key}")
    elif isinstance(value, list):
        for child in value:
            yield from snake_case_keys(child, f"{where}[]")


def test_responses_are_camel_case(gateway: Gateway) -> None:
    """What the API answers is camelCase too, nested objects included (user data aside)."""
    made = call(gateway, "POST", "/workflows", json=workflow("fuzz-camel"))
    assert made.status_code == 201, made.text
    not_camel = [
        key
        for path in ("/workflows/fuzz-camel", "/workflows", "/nodes", "/alerts", "/stats", "/tasks")
        for key in snake_case_keys(call(gateway, "GET", path).json(), path)
    ]
    assert not not_camel, "\n".join(not_camel)


def test_openapi_documents_every_response(openapi: dict[str, Any]) -> None:
    """Every /api/v1 operation documents its result and its errors (in the one error shape)."""
    error_ref = "#/components/schemas/ErrorResponse"
    error = openapi["components"]["schemas"]["ErrorResponse"]
    assert error["required"] == ["error"]
    body = openapi["components"]["schemas"]["ErrorBody"]
    assert {"code", "message"} <= set(body["required"])
    assert {"code", "message", "details"} == set(body["properties"])

    problems = []
    operations = [
        (method.upper(), path, operation)
        for path, by_method in openapi["paths"].items()
        if path.startswith(API)
        for method, operation in by_method.items()
    ]
    assert len(operations) >= 30
    for method, path, operation in operations:
        label = f"{method} {path}"
        responses: dict[str, Any] = operation["responses"]
        required = {"401", "422"}
        if method != "GET" and path != f"{API}/workflows/validate":
            required.add("403")  # admin only
        if "{" in path:
            required.add("404")
        if missing := required - set(responses):
            problems.append(f"{label}: no {sorted(missing)} response")
        for status, response in responses.items():
            if status.startswith(("4", "5")):
                ref = response.get("content", {}).get("application/json", {}).get("schema", {})
                if ref.get("$ref") != error_ref:
                    problems.append(f"{label}: {status} is not an ErrorResponse")
        successes = {status: r for status, r in responses.items() if status.startswith("2")}
        if not successes:
            problems.append(f"{label}: no success response")
        for status, response in successes.items():
            if status == "204":
                continue
            documented = response.get("content", {}).get("application/json", {}).get("schema", {})
            # A route without a response_model gets a schema with a title and nothing else.
            if not set(documented) - {"title", "description"}:
                problems.append(f"{label}: {status} has no response schema")
        if {"HTTPBearer": []} not in operation.get("security", []):
            problems.append(f"{label}: no bearer security requirement")
    assert not problems, "\n".join(problems)


def test_validation_errors_name_field_paths(gateway: Gateway) -> None:
    """A bad body is a 422 whose details name each bad field by its camelCase path."""
    response = gateway.session.post(
        f"{gateway.url}{API}/tasks",
        json={"taskType": "", "delaySeconds": -1, "priority": "high", "extra": 1},
        headers=gateway.headers,
        timeout=10,
    )
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    paths = {detail["path"] for detail in error["details"]}
    assert {"body.taskType", "body.delaySeconds", "body.priority", "body.extra"} <= paths


def hostile(
    case_id: str, method: str, path: str, error_path: str | None = None, **kwargs: Any
) -> Any:
    """A request the gateway mishandled; ``error_path`` is the field its 422 must name, if any."""
    return pytest.param(method, path, kwargs, error_path, id=case_id)


def task(**fields: Any) -> dict[str, Any]:
    return {"taskType": "tickbase.echo", **fields}


def workflow(name: str = "fuzz-w", step: dict[str, Any] | None = None, **fields: Any) -> Any:
    return {"name": name, "steps": [{**STEP, **(step or {})}], **fields}


HOSTILE = [
    hostile("tasks-cursor-not-ascii-digit", "GET", "/tasks", params={"cursor": "³"}),
    hostile("runs-cursor-not-ascii-digit", "GET", "/runs", params={"cursor": "³"}),
    hostile("tasks-filter-nul", "GET", "/tasks", params={"taskType": NUL}),
    hostile("runs-filter-nul", "GET", "/runs", params={"workflow": NUL}),
    hostile("task-payload-value-nul", "POST", "/tasks", json=task(payload={"k": NUL})),
    hostile("task-payload-key-nul", "POST", "/tasks", json=task(payload={NUL: 1})),
    # Coerced rather than refused (a boolean is not a number, a string not an integer).
    hostile(
        "task-delay-boolean", "POST", "/tasks", "body.delaySeconds", json=task(delaySeconds=False)
    ),
    hostile("task-priority-boolean", "POST", "/tasks", "body.priority", json=task(priority=True)),
    hostile("task-priority-string", "POST", "/tasks", "body.priority", json=task(priority="5")),
    hostile("schedule-name-nul", "POST", "/schedules", json=schedule(NUL)),
    hostile(
        "schedule-description-nul", "POST", "/schedules", json=schedule("fuzz-d", description=NUL)
    ),
    hostile(
        "schedule-payload-nul", "POST", "/schedules", json=schedule("fuzz-p", payload={"k": NUL})
    ),
    hostile(
        "schedule-max-instances-past-int4",
        "POST",
        "/schedules",
        json=schedule("fuzz-i", maxInstances=INT4_PAST),
    ),
    # null for a field the schedule cannot be without (the column is NOT NULL).
    hostile(
        "schedule-patch-null",
        "PATCH",
        f"/schedules/{TARGET}",
        "body.coalesce",
        json={"coalesce": None},
    ),
    hostile(
        "schedule-patch-max-instances-past-int4",
        "PATCH",
        f"/schedules/{TARGET}",
        json={"maxInstances": INT4_PAST},
    ),
    hostile(
        "schedule-patch-description-nul", "PATCH", f"/schedules/{TARGET}", json={"description": NUL}
    ),
    hostile(
        "schedule-patch-payload-nul", "PATCH", f"/schedules/{TARGET}", json={"payload": {"k": NUL}}
    ),
    hostile(
        "workflow-max-parallel-past-int4",
        "POST",
        "/workflows",
        json=workflow(maxParallel=INT4_PAST),
    ),
    hostile("workflow-name-nul", "POST", "/workflows", json=workflow(NUL)),
    hostile("workflow-step-name-nul", "POST", "/workflows", json=workflow(step={"name": NUL})),
    hostile(
        "workflow-step-payload-nul",
        "POST",
        "/workflows",
        json=workflow(step={"payload": {"k": NUL}}),
    ),
]


@pytest.fixture(scope="module")
def target_schedule(gateway: Gateway) -> str:
    made = call(gateway, "POST", "/schedules", json=schedule(TARGET))
    assert made.status_code == 201, made.text
    return TARGET


@pytest.mark.parametrize(("method", "path", "request_kwargs", "error_path"), HOSTILE)
def test_hostile_input_is_refused_not_a_500(
    gateway: Gateway,
    target_schedule: str,
    method: str,
    path: str,
    request_kwargs: dict[str, Any],
    error_path: str | None,
) -> None:
    """Input the database cannot hold is a 4xx in the one error shape (a 200 for a filter)."""
    offset = gateway.log_size()
    response = call(gateway, method, path, **request_kwargs)
    explained = f"{response.status_code} {response.text}\n{gateway.log_since(offset)}"
    assert response.status_code < 500, explained
    if method == "GET" and response.status_code == 200:
        return  # a filter nothing matches
    assert 400 <= response.status_code < 500, explained
    error = response.json()["error"]
    assert {"code", "message", "details"} == set(error)
    if error_path is not None:
        assert response.status_code == 422, explained
        assert error_path in {detail["path"] for detail in error["details"] or []}, explained


@pytest.mark.parametrize(
    ("create", "read"),
    [
        pytest.param("/schedules", "/schedules/{}", id="schedule"),
        pytest.param("/workflows", "/workflows/{}", id="workflow"),
    ],
)
def test_what_is_created_can_be_addressed(gateway: Gateway, create: str, read: str) -> None:
    """A name the API accepts on create is a name its path parameters accept too."""
    name = "Zürich close"
    body = schedule(name) if create == "/schedules" else workflow(name)
    made = call(gateway, "POST", create, json=body)
    assert made.status_code in (201, 422), made.text
    if made.status_code == 201:
        found = call(gateway, "GET", read.format(quote(name)))
        assert found.status_code == 200, found.text


def test_results_are_returned_verbatim(
    gateway: Gateway, target_schedule: str, fuzz_database_url: str
) -> None:
    """A task's result is the handler's data: listings must not rename its keys."""
    fired = call(gateway, "POST", f"/schedules/{target_schedule}/trigger")
    assert fired.status_code == 200, fired.text
    task_id = fired.json()["taskId"]
    result = {"row_count": 3, "by_symbol": {"BRK_B": 1}}
    with psycopg.connect(fuzz_database_url, autocommit=True) as conn:
        # What a worker records when the handler returns ``result``.
        conn.execute(
            "UPDATE tickbase.tasks SET result = %s::jsonb WHERE id = %s",
            (json.dumps(result), task_id),
        )
    task = call(gateway, "GET", f"/tasks/{task_id}")
    assert task.json()["result"] == result
    page = call(gateway, "GET", f"/schedules/{target_schedule}/executions")
    assert page.status_code == 200, page.text
    [execution] = [item for item in page.json()["items"] if item["id"] == task_id]
    assert execution["result"] == result
