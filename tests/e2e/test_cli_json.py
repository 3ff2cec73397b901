"""The CLI's ``--json`` speaks the HTTP API's JSON: the same keys for the same
objects (one serialisation), and errors in the API's error shape on stderr."""

from __future__ import annotations

import json

from tests.e2e.conftest import run_cli
from tests.support.gateway import gateway_test_app, running_gateway


async def test_cli_task_and_schedule_json_have_the_http_keys(database_url: str) -> None:
    enqueued = run_cli(
        "enqueue", "tickbase.echo", "--payload", '{"my_arg": 1}', "--json",
        database_url=database_url,
    )  # fmt: skip
    assert enqueued.returncode == 0, enqueued.stderr
    task_id = json.loads(enqueued.stdout)["id"]
    shown = run_cli("tasks", "show", str(task_id), "--json", database_url=database_url)
    assert shown.returncode == 0, shown.stderr
    cli_task = json.loads(shown.stdout)
    listed = json.loads(run_cli("tasks", "list", "--json", database_url=database_url).stdout)
    added = run_cli(
        "schedules", "add", "each-minute", "--task", "tickbase.echo", "--every", "60", "--json",
        database_url=database_url,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    cli_schedule = json.loads(added.stdout)

    app = gateway_test_app(database_url)
    async with app, running_gateway(app) as gw, gw.http() as http:
        http_task = (await http.get(f"/api/v1/tasks/{task_id}")).json()
        http_schedule = (await http.get("/api/v1/schedules/each-minute")).json()

    assert set(cli_task) - {"events"} == set(http_task)
    assert set(listed[0]) == set(http_task) - {"waiting"}  # a listing does not ask why
    assert cli_task["payload"] == {"my_arg": 1}  # the user's keys are left alone
    # The gateway's worker may have run it since; what was stored is written alike.
    stored = ("id", "taskType", "queue", "priority", "payload", "maxAttempts", "runAt", "createdAt")
    assert {k: cli_task[k] for k in stored} == {k: http_task[k] for k in stored}
    assert set(cli_schedule) == set(http_schedule)
    assert cli_schedule["intervalSeconds"] == http_schedule["intervalSeconds"] == 60.0


def test_cli_errors_under_json_are_json_on_stderr(database_url: str) -> None:
    missing = run_cli("tasks", "show", "424242", "--json", database_url=database_url)
    assert missing.returncode == 1 and missing.stdout == ""
    error = json.loads(missing.stderr)["error"]
    assert set(error) == {"code", "message", "details"}
    assert error["code"] == "NOT_FOUND" and "424242" in error["message"]

    bad = run_cli("schedules", "add", "x", "--task", "t", "--payload", "[1]", "--json")
    assert bad.returncode == 1
    assert json.loads(bad.stderr)["error"]["code"] == "INVALID_INPUT"

    plain = run_cli("tasks", "show", "424242", database_url=database_url)
    assert plain.returncode == 1 and "does not exist" in plain.stderr
    assert not plain.stderr.lstrip().startswith("{")
