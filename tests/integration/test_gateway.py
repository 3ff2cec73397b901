"""The HTTP API over a real uvicorn on 127.0.0.1: routes, roles, errors, camelCase."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import psycopg
import pytest

from tests.support.gateway import RunningGateway, gateway_test_app, running_gateway
from tests.support.waiting import wait_until
from tickbase.gateway.auth import Principal, SessionSigner


@pytest.fixture
async def gw(database_url: str) -> AsyncIterator[RunningGateway]:
    app = gateway_test_app(database_url)
    async with app, running_gateway(app) as running:
        yield running


async def test_submit_get_list_with_cursor_cancel_retry(gw: RunningGateway) -> None:
    async with gw.http() as http:
        created = await http.post(
            "/api/v1/tasks", json={"taskType": "t.add", "payload": {"a": 2, "b": 3}}
        )
        assert created.status_code == 201, created.text
        task = created.json()
        assert task["taskType"] == "t.add" and task["maxAttempts"] == 1  # camelCase outside

        async def done() -> bool:
            got = (await http.get(f"/api/v1/tasks/{task['id']}")).json()
            return bool(got["status"] == "succeeded" and got["result"] == 5)

        await wait_until(done, timeout=10, message="the task ran")

        for n in range(5):
            assert (
                await http.post(
                    "/api/v1/tasks",
                    json={"taskType": "t.add", "payload": {"a": n, "b": 0}, "delaySeconds": 3600},
                )
            ).status_code == 201
        first = (await http.get("/api/v1/tasks", params={"limit": 4})).json()
        assert len(first["items"]) == 4 and first["nextCursor"]
        second = (
            await http.get("/api/v1/tasks", params={"limit": 4, "cursor": first["nextCursor"]})
        ).json()
        ids = [t["id"] for t in first["items"] + second["items"]]
        assert len(ids) == 6 and ids == sorted(ids, reverse=True) and second["nextCursor"] is None
        pending = (await http.get("/api/v1/tasks", params={"status": "pending"})).json()["items"]
        assert len(pending) == 5

        cancelled = await http.post(f"/api/v1/tasks/{pending[0]['id']}/cancel")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        again = await http.post(f"/api/v1/tasks/{pending[0]['id']}/retry")
        assert again.status_code == 201 and again.json()["id"] != pending[0]["id"]
        not_final = await http.post(f"/api/v1/tasks/{pending[1]['id']}/retry")
        assert not_final.status_code == 409 and not_final.json()["error"]["code"] == "CONFLICT"


async def test_roles_and_credentials(gw: RunningGateway, sql_conn: psycopg.Connection[Any]) -> None:
    body = {"taskType": "t.add", "payload": {"a": 1, "b": 1}}
    async with gw.http(gw.viewer) as viewer:
        assert (await viewer.get("/api/v1/tasks")).status_code == 200  # viewers read
        for method, path, json in (
            ("POST", "/api/v1/tasks", body),
            ("POST", "/api/v1/tasks/1/cancel", None),
            ("POST", "/api/v1/tasks/1/retry", None),
            ("POST", "/api/v1/schedules", {"name": "s", "taskType": "t.add", "manual": True}),
            ("POST", "/api/v1/schedules/s/trigger", None),
            ("POST", "/api/v1/schedules/s/pause", None),
            ("PATCH", "/api/v1/schedules/s", {"priority": 1}),
            ("DELETE", "/api/v1/schedules/s", None),
            (
                "POST",
                "/api/v1/workflows",
                {"name": "w", "steps": [{"name": "a", "taskType": "t.add"}]},
            ),
            ("DELETE", "/api/v1/workflows/w", None),
            ("POST", "/api/v1/workflows/w/runs", None),
            ("POST", "/api/v1/runs/1/cancel", None),
        ):
            response = await viewer.request(method, path, json=json)
            assert response.status_code == 403, (method, path, response.text)
            assert response.json()["error"]["code"] == "FORBIDDEN"
    assert sql_conn.execute("SELECT count(*) FROM tickbase.tasks").fetchone() == (0,)

    async with gw.http("tb_" + "x" * 43) as forged:
        refused = await forged.get("/api/v1/tasks")
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
        assert refused.json()["error"]["code"] == "UNAUTHORIZED"
    async with gw.http() as http:
        missing = await http.get("/api/v1/tasks", headers={"Authorization": ""})
        assert missing.status_code == 401
        basic = await http.get("/api/v1/tasks", headers={"Authorization": "Basic abc"})
        assert basic.status_code == 401 and "Bearer" in basic.json()["error"]["message"]
    # a dashboard session works where a header cannot be set
    signer = await SessionSigner.load(gw.app.pool)  # the secret is shared through the database
    session = signer.issue(Principal(user="dash", role="viewer", token_id=None))
    async with httpx.AsyncClient(base_url=gw.base) as browser:  # no Authorization header
        ok = await browser.get("/api/v1/tasks", params={"session": session})
        assert ok.status_code == 200
        expired = signer.issue(
            Principal(user="dash", role="viewer", token_id=None), ttl=1, now=time.time() - 60
        )
        late = await browser.get("/api/v1/tasks", params={"session": expired})
        assert late.status_code == 401 and "expired" in late.json()["error"]["message"]
        forged = session[:-2] + ("AA" if not session.endswith("AA") else "BB")
        assert (await browser.get("/api/v1/tasks", params={"session": forged})).status_code == 401
    # the dashboard's way to a session: exchange its token
    async with gw.http(gw.viewer) as viewer:
        made = await viewer.post("/api/v1/auth/session")
        assert made.status_code == 200 and made.json()["role"] == "viewer"
    async with httpx.AsyncClient(base_url=gw.base) as browser:
        own = await browser.get("/api/v1/tasks", params={"session": made.json()["session"]})
        assert own.status_code == 200
        denied = await browser.post(
            "/api/v1/tasks", params={"session": session}, json={"taskType": "t.add"}
        )
        assert denied.status_code == 403  # a viewer's session cannot write


async def test_bad_input_is_422_with_field_paths_and_nothing_stored(
    gw: RunningGateway, sql_conn: psycopg.Connection[Any]
) -> None:
    async with gw.http() as http:
        cases = [
            ({"taskType": "t.add", "payload": "not an object"}, "body.payload"),
            ({"taskType": "t.add", "priority": 5000}, "body.priority"),
            ({"taskType": "t.add", "queue": "bad queue!"}, "body.queue"),
            ({"taskType": "t.add", "delaySeconds": -1}, "body.delaySeconds"),
            ({"payload": {}}, "body.taskType"),
            ({"taskType": "t.add", "unknownField": 1}, "body.unknownField"),
        ]
        for body, path in cases:
            response = await http.post("/api/v1/tasks", json=body)
            assert response.status_code == 422, (body, response.text)
            error = response.json()["error"]
            assert error["code"] == "VALIDATION_ERROR"
            assert path in [d["path"] for d in error["details"]], (body, error)
        unknown = await http.post("/api/v1/tasks", json={"taskType": "no.such.task"})
        assert unknown.status_code == 422 and unknown.json()["error"]["code"] == "UNKNOWN_TASK_TYPE"
        nan = await http.post(
            "/api/v1/tasks",
            content=b'{"taskType": "t.add", "payload": {"x": NaN}}',
            headers={"content-type": "application/json"},
        )
        assert nan.status_code == 422
        not_json = await http.post(
            "/api/v1/tasks", content=b"{oops", headers={"content-type": "application/json"}
        )
        assert not_json.status_code == 422
        assert (await http.get("/api/v1/tasks/999999")).status_code == 404
        assert (await http.get("/api/v1/tasks/0")).status_code == 422
        assert (await http.get("/api/v1/tasks", params={"cursor": "abc"})).status_code == 422
        assert (await http.get("/api/v1/nowhere")).json()["error"]["code"] == "NOT_FOUND"
    assert sql_conn.execute("SELECT count(*) FROM tickbase.tasks").fetchone() == (0,)


async def test_request_ledger_is_idempotent_and_pollable(gw: RunningGateway) -> None:
    async with gw.http() as http:
        body = {"taskType": "t.add", "payload": {"a": 4, "b": 4}, "requestId": "poll-1"}
        first = await http.post("/api/v1/tasks", json=body)
        again = await http.post("/api/v1/tasks", json=body)
        assert (first.status_code, again.status_code) == (201, 200)
        assert first.json()["id"] == again.json()["id"]  # one task, whatever the retries

        async def succeeded() -> bool:
            state = (await http.get("/api/v1/requests/poll-1")).json()
            return bool(state["status"] == "succeeded")

        await wait_until(succeeded, timeout=10, message="the request succeeded")
        state = (await http.get("/api/v1/requests/poll-1")).json()
        assert state == {
            "requestId": "poll-1",
            "action": "tasks.submit",
            "status": "succeeded",
            "data": 8,
            "error": None,
        }
        failing = {"taskType": "t.boom", "requestId": "poll-2"}
        assert (await http.post("/api/v1/tasks", json=failing)).status_code == 201

        async def failed() -> bool:
            return bool((await http.get("/api/v1/requests/poll-2")).json()["status"] == "failed")

        await wait_until(failed, timeout=10, message="the request failed")
        error = (await http.get("/api/v1/requests/poll-2")).json()["error"]
        assert error["code"] == "TASK_FAILED" and "exploded on purpose" in error["message"]
    # requests belong to their user
    async with gw.http(gw.viewer) as viewer:
        assert (await viewer.get("/api/v1/requests/poll-1")).status_code == 404


async def test_schedules_over_http(gw: RunningGateway, sql_conn: psycopg.Connection[Any]) -> None:
    async with gw.http() as http:
        bad = await http.post(
            "/api/v1/schedules", json={"name": "bad", "taskType": "t.add", "cron": "61 * * * *"}
        )
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "INVALID_SCHEDULE"
        assert "minute" in bad.json()["error"]["message"]
        created = await http.post(
            "/api/v1/schedules",
            json={
                "name": "add-hourly",
                "taskType": "t.add",
                "cron": "0 * * * *",
                "payload": {"a": 1, "b": 2},
                "timezone": "America/New_York",
            },
        )
        assert created.status_code == 201, created.text
        assert created.json()["nextFireAt"] and created.json()["kind"] == "cron"
        duplicate = await http.post(
            "/api/v1/schedules", json={"name": "add-hourly", "taskType": "t.add", "manual": True}
        )
        assert duplicate.status_code in (409, 422)
        for action, field, value in (
            ("pause", "paused", True),
            ("resume", "paused", False),
            ("disable", "enabled", False),
            ("enable", "enabled", True),
        ):
            changed = await http.post(f"/api/v1/schedules/add-hourly/{action}")
            assert changed.status_code == 200 and changed.json()[field] is value, action
        updated = await http.patch("/api/v1/schedules/add-hourly", json={"cron": "*/5 * * * *"})
        assert updated.status_code == 200 and updated.json()["cron"] == "*/5 * * * *"
        fired = await http.post("/api/v1/schedules/add-hourly/trigger")
        assert fired.status_code == 200 and fired.json()["fireAt"]

        async def executed() -> bool:
            rows = (await http.get("/api/v1/schedules/add-hourly/executions")).json()["items"]
            return bool(rows and rows[0]["status"] == "succeeded")

        await wait_until(executed, timeout=10, message="the manual fire ran")
        stats = (await http.get("/api/v1/schedules/add-hourly/stats")).json()
        assert stats and all("_" not in key for key in stats)
        listed = (await http.get("/api/v1/schedules")).json()
        assert "add-hourly" in [s["name"] for s in listed]
        removed = await http.delete("/api/v1/schedules/add-hourly")
        assert removed.status_code == 200
        assert (await http.get("/api/v1/schedules/nope")).status_code == 404
        assert (await http.post("/api/v1/schedules/nope/trigger")).status_code == 404


async def test_workflows_over_http(gw: RunningGateway) -> None:
    steps = [
        {"name": "first", "taskType": "t.add", "payload": {"a": 1, "b": 1}},
        {"name": "second", "taskType": "t.add", "after": ["first"], "payload": {"a": 2, "b": 2}},
    ]
    async with gw.http() as http:
        cycle = await http.post(
            "/api/v1/workflows/validate",
            json={
                "name": "loop",
                "steps": [
                    {"name": "a", "taskType": "t.add", "after": ["b"]},
                    {"name": "b", "taskType": "t.add", "after": ["a"]},
                ],
            },
        )
        assert cycle.status_code == 422 and "a -> b -> a" in cycle.json()["error"]["message"]
        valid = await http.post("/api/v1/workflows/validate", json={"name": "wf", "steps": steps})
        assert valid.json() == {"valid": True, "order": ["first", "second"]}
        saved = await http.post("/api/v1/workflows", json={"name": "wf", "steps": steps})
        assert saved.status_code == 201 and saved.json()["name"] == "wf"
        run = await http.post("/api/v1/workflows/wf/runs")
        assert run.status_code == 201
        run_id = run.json()["id"]

        async def finished() -> bool:
            got = (await http.get(f"/api/v1/runs/{run_id}")).json()
            return bool(got["status"] == "succeeded")

        await wait_until(finished, timeout=15, message="the run finished")
        got = (await http.get(f"/api/v1/runs/{run_id}")).json()
        assert [s["name"] for s in got["steps"]] == ["first", "second"]
        assert got["steps"][1]["result"] == 4 and got["workflow"] == "wf"
        runs = (await http.get("/api/v1/runs", params={"workflow": "wf"})).json()
        assert [r["id"] for r in runs["items"]] == [run_id] and runs["nextCursor"] is None
        second = (await http.post("/api/v1/workflows/wf/runs")).json()["id"]
        page = (await http.get("/api/v1/runs", params={"limit": 1})).json()
        assert [r["id"] for r in page["items"]] == [second] and page["nextCursor"]
        rest = (
            await http.get("/api/v1/runs", params={"limit": 1, "cursor": page["nextCursor"]})
        ).json()
        assert [r["id"] for r in rest["items"]] == [run_id]
        assert (await http.delete("/api/v1/workflows/wf")).status_code == 204
        assert (await http.get("/api/v1/workflows/wf")).status_code == 404
        assert (await http.get(f"/api/v1/runs/{run_id}")).status_code == 200  # history kept
        assert (await http.get("/api/v1/runs/999999")).status_code == 404


async def test_health_ready_metrics_openapi_cluster(gw: RunningGateway) -> None:
    async with gw.http() as http:
        assert (await http.get("/healthz")).json() == {"status": "ok", "details": {}}
        ready = (await http.get("/readyz")).json()
        assert ready["status"] == "ok" and ready["details"]["schemaVersion"] >= 8
        metrics = await http.get("/metrics")
        assert metrics.status_code == 200 and "tickbase_tasks" in metrics.text
        spec = (await http.get("/openapi.json")).json()
        submit = spec["components"]["schemas"]["TaskSubmit"]["properties"]
        assert {"taskType", "delaySeconds", "requestId"} <= set(submit)
        assert "ErrorResponse" in spec["components"]["schemas"]
        assert isinstance((await http.get("/api/v1/nodes")).json(), list)
        stats = (await http.get("/api/v1/stats")).json()
        assert "backlog" in stats and "nodesAlive" in stats
        assert (await http.get("/api/v1/alerts")).json() == {"items": [], "nextCursor": None}
        assert (await http.get("/api/v1/alerts", params={"state": "bad"})).status_code == 422


async def test_readyz_is_not_ready_while_migrations_are_pending(
    gw: RunningGateway, sql_conn: psycopg.Connection[Any]
) -> None:
    async with gw.http() as http:
        assert (await http.get("/readyz")).status_code == 200
        sql_conn.execute("DELETE FROM tickbase.schema_migrations WHERE version = 8")
        response = await http.get("/readyz")
        assert response.status_code == 503
        assert response.json() == {"status": "unavailable", "details": {"pendingMigrations": [8]}}
