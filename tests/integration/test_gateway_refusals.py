"""The HTTP routes refuse what cannot be done with a status and a sentence, and change nothing
(real uvicorn on 127.0.0.1, real PostgreSQL).

Proven here: an update naming no field is 422 and leaves the schedule as it
was; the deprecated ``everySeconds`` of an update changes the interval;
execution cursors must be aware ISO 8601 times, and pages follow them; an
unknown workflow or run is 404 naming it; the token making a request cannot
revoke itself (and still works after), an unknown one is 404; a session
cannot be made from a session that no token stands behind; a value the
database itself refuses maps to 422 quoting the database's reason.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx
import psycopg
import pytest

from tests.support.gateway import RunningGateway, gateway_test_app, running_gateway
from tickbase.gateway.auth import Principal, SessionSigner, TokenStore
from tickbase.gateway.errors import api_error


@pytest.fixture
async def gw(database_url: str) -> AsyncIterator[RunningGateway]:
    app = gateway_test_app(database_url)
    async with app, running_gateway(app, worker=False) as running:
        yield running


def error_of(response: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = response.json()["error"]
    return body


async def test_an_update_that_changes_nothing_is_refused_and_stores_nothing(
    gw: RunningGateway,
) -> None:
    async with gw.http() as http:
        created = await http.post(
            "/api/v1/schedules",
            json={"name": "tick", "taskType": "t.add", "intervalSeconds": 60},
        )
        assert created.status_code == 201, created.text
        empty = await http.patch("/api/v1/schedules/tick", json={})
        assert empty.status_code == 422
        assert error_of(empty)["message"] == "nothing to change: give at least one field"
        only_old = await http.patch("/api/v1/schedules/tick", json={"name": "renamed"})
        assert only_old.status_code == 422 and error_of(only_old)["code"] == "VALIDATION_ERROR"
        assert error_of(only_old)["details"][0]["path"] == "body.name"
        null = await http.patch("/api/v1/schedules/tick", json={"queue": None})
        assert null.status_code == 422
        assert "cannot be null" in error_of(null)["details"][0]["message"]
        after = (await http.get("/api/v1/schedules/tick")).json()
        assert after == created.json()


async def test_an_update_by_the_old_interval_name_changes_the_interval(
    gw: RunningGateway,
) -> None:
    async with gw.http() as http:
        await http.post(
            "/api/v1/schedules", json={"name": "tick", "taskType": "t.add", "intervalSeconds": 60}
        )
        changed = await http.patch("/api/v1/schedules/tick", json={"everySeconds": 30})
        assert changed.status_code == 200, changed.text
        assert changed.json()["intervalSeconds"] == 30
        assert "everySeconds" not in changed.json()


@pytest.mark.parametrize("cursor", ["yesterday", "2030-01-01T00:00:00", "2030-13-01T00:00:00Z"])
async def test_an_executions_cursor_must_be_an_aware_time(gw: RunningGateway, cursor: str) -> None:
    async with gw.http() as http:
        await http.post(
            "/api/v1/schedules", json={"name": "m", "taskType": "t.add", "manual": True}
        )
        refused = await http.get("/api/v1/schedules/m/executions", params={"cursor": cursor})
        assert refused.status_code == 422
        assert error_of(refused) == {
            "code": "VALIDATION_ERROR",
            "message": f"invalid cursor {cursor!r}",
            "details": [
                {"path": "query.cursor", "message": "use the nextCursor of the previous page"}
            ],
        }


async def test_executions_are_paged_newest_first_by_their_cursor(gw: RunningGateway) -> None:
    async with gw.http() as http:
        await http.post(
            "/api/v1/schedules", json={"name": "m", "taskType": "t.add", "manual": True}
        )
        fires = [(await http.post("/api/v1/schedules/m/trigger")).json() for _ in range(3)]
        first = (await http.get("/api/v1/schedules/m/executions", params={"limit": 2})).json()
        assert [row["id"] for row in first["items"]] == [f["taskId"] for f in fires[::-1][:2]]
        assert all(row["manual"] for row in first["items"])
        oldest_shown = datetime.fromisoformat(first["items"][-1]["fireAt"])
        assert datetime.fromisoformat(first["nextCursor"]) == oldest_shown
        rest = await http.get(
            "/api/v1/schedules/m/executions", params={"limit": 2, "cursor": first["nextCursor"]}
        )
        assert [row["id"] for row in rest.json()["items"]] == [fires[0]["taskId"]]
        assert rest.json()["nextCursor"] is None
        unknown = await http.get("/api/v1/schedules/nope/executions")
        assert unknown.status_code == 404 and error_of(unknown)["code"] == "NOT_FOUND"


async def test_unknown_workflows_and_runs_are_404_by_name(gw: RunningGateway) -> None:
    async with gw.http() as http:
        for method, path in (
            ("GET", "/api/v1/workflows/ghost"),
            ("DELETE", "/api/v1/workflows/ghost"),
            ("POST", "/api/v1/workflows/ghost/runs"),
        ):
            response = await http.request(method, path)
            assert response.status_code == 404, (method, path)
            assert error_of(response)["message"] == "no workflow named 'ghost'"
        for method, path in (("GET", "/api/v1/runs/999"), ("POST", "/api/v1/runs/999/cancel")):
            response = await http.request(method, path)
            assert response.status_code == 404 and error_of(response)["code"] == "NOT_FOUND"
        assert (await http.get("/api/v1/runs")).json() == {"items": [], "nextCursor": None}


async def test_a_workflow_with_a_cycle_is_refused_and_not_stored(gw: RunningGateway) -> None:
    steps = [
        {"name": "a", "taskType": "t.add", "after": ["b"]},
        {"name": "b", "taskType": "t.add", "after": ["a"]},
    ]
    async with gw.http() as http:
        for path in ("/api/v1/workflows", "/api/v1/workflows/validate"):
            refused = await http.post(path, json={"name": "loop", "steps": steps})
            assert refused.status_code == 422, refused.text
            assert error_of(refused)["code"] == "INVALID_WORKFLOW"
            assert "cycle" in error_of(refused)["message"]
        assert (await http.get("/api/v1/workflows")).json() == []


async def test_the_token_making_the_request_cannot_revoke_itself(gw: RunningGateway) -> None:
    async with gw.http() as http:
        [me] = [
            t
            for t in (await http.get("/api/v1/tokens")).json()
            if t["name"].startswith("test-admin")
        ]
        refused = await http.delete(f"/api/v1/tokens/{me['id']}")
        assert refused.status_code == 409
        assert error_of(refused)["message"] == (
            f"token {me['id']} is the one making this request: use another"
        )
        assert (await http.get("/api/v1/tokens")).status_code == 200  # still works
        missing = await http.delete("/api/v1/tokens/999999")
        assert missing.status_code == 404
        assert error_of(missing)["message"] == "no active token with id 999999"
    assert await TokenStore(gw.app.pool).verify(gw.admin) is not None


async def test_an_alert_rule_update_that_changes_nothing_is_refused(gw: RunningGateway) -> None:
    async with gw.http() as http:
        before = (await http.get("/api/v1/alert-rules")).json()
        name = before[0]["name"]
        empty = await http.patch(f"/api/v1/alert-rules/{name}", json={})
        assert empty.status_code == 422
        assert error_of(empty)["message"] == "nothing to change: give at least one field"
        negative = await http.patch(f"/api/v1/alert-rules/{name}", json={"threshold": -1})
        assert negative.status_code == 422
        assert error_of(negative)["details"][0]["path"] == "body.threshold"
        assert (await http.get("/api/v1/alert-rules")).json() == before


async def test_a_session_is_made_from_a_token_not_from_a_tokenless_session(
    gw: RunningGateway,
) -> None:
    signer = await SessionSigner.load(gw.app.pool)
    session = signer.issue(Principal(user="embedded", role="admin", token_id=None))
    async with httpx.AsyncClient(base_url=gw.base) as browser:
        refused = await browser.post("/api/v1/auth/session", params={"session": session})
        assert refused.status_code == 403
        assert error_of(refused) == {
            "code": "FORBIDDEN",
            "message": "a session is made from an API token",
            "details": None,
        }
    async with gw.http(gw.viewer) as viewer:
        made = await viewer.post("/api/v1/auth/session")
        assert made.status_code == 200 and made.json()["role"] == "viewer"


def test_a_value_the_database_refuses_is_422_with_its_reason(
    sql_conn: psycopg.Connection[Any],
) -> None:
    with pytest.raises(psycopg.DataError) as excinfo:
        sql_conn.execute("SELECT 'ten'::int")
    error = api_error(excinfo.value)
    assert (error.status, error.code) == (422, "INVALID_INPUT")
    assert error.message == 'invalid value: invalid input syntax for type integer: "ten"'
