"""What the dashboard's workflow pages read from ``/api/v1/runs`` (issue 16).

GET /api/v1/runs/{id} also answers each step's ``taskType`` and ``after``
(the DAG's edges) and the run's ``mode``, ``onFailure`` and ``maxParallel``,
beside the fields it always had; GET /api/v1/runs filters by ``status``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

import tickbase
from tests.support.gateway import RunningGateway, gateway_test_app, running_gateway
from tests.support.waiting import wait_until

STEPS = [
    {"name": "a", "taskType": "t.add", "payload": {"a": 1, "b": 1}},
    {"name": "b", "taskType": "t.add", "after": ["a"], "payload": {"a": 2, "b": 2}},
    {"name": "c", "taskType": "t.sleep", "after": ["a"], "payload": {"seconds": 0.01}},
    {"name": "d", "taskType": "t.add", "after": ["b", "c"], "payload": {"a": 3, "b": 3}},
]
STEP_FIELDS = {
    # as before the dashboard
    "name",
    "status",
    "taskId",
    "taskStatus",
    "result",
    "attempts",
    "startedAt",
    "finishedAt",
    "duration",
    # added for the run page
    "taskType",
    "after",
}


@pytest.fixture
async def gw(database_url: str) -> AsyncIterator[RunningGateway]:
    app = gateway_test_app(database_url)
    async with app, running_gateway(app) as running:
        yield running


async def test_a_run_answers_its_edges_task_types_and_mode(gw: RunningGateway) -> None:
    async with gw.http() as http:
        body = {"name": "diamond", "mode": "parallel", "maxParallel": 3, "steps": STEPS}
        assert (await http.post("/api/v1/workflows", json=body)).status_code == 201
        run_id = (await http.post("/api/v1/workflows/diamond/runs")).json()["id"]

        async def finished() -> dict[str, object] | None:
            got = (await http.get(f"/api/v1/runs/{run_id}")).json()
            return got if got["status"] == "succeeded" else None

        run = await wait_until(finished, timeout=15, message="the run finished")
    assert {"id", "workflow", "status", "steps", "startedAt", "finishedAt"} <= set(run)
    assert (run["mode"], run["onFailure"], run["maxParallel"]) == ("parallel", "stop", 3)
    steps = {s["name"]: s for s in run["steps"]}  # type: ignore[attr-defined]
    assert all(set(s) == STEP_FIELDS for s in steps.values())
    assert {n: s["after"] for n, s in steps.items()} == {
        "a": [],
        "b": ["a"],
        "c": ["a"],
        "d": ["b", "c"],
    }
    assert steps["c"]["taskType"] == "t.sleep" and steps["d"]["result"] == 6
    assert all(s["taskId"] and s["startedAt"] and s["finishedAt"] for s in steps.values())


async def test_runs_filter_by_status(gw: RunningGateway) -> None:
    app: tickbase.App = gw.app
    await app.workflow("slow").step("s", "t.sleep", payload={"seconds": 30}).save()
    await app.workflow("quick").step("s", "t.add", payload={"a": 1, "b": 2}).save()
    slow = await app.workflows.start("slow")
    quick = await app.workflows.start("quick")
    assert await quick.wait(timeout=15) == "succeeded"
    async with gw.http() as http:

        async def ids(**params: str) -> list[int]:
            page = (await http.get("/api/v1/runs", params=params)).json()
            return [r["id"] for r in page["items"]]

        assert await ids() == [quick.id, slow.id]
        assert await ids(status="running") == [slow.id]
        assert await ids(status="succeeded") == [quick.id]
        assert await ids(status="succeeded", workflow="slow") == []
        assert await ids(status="running", workflow="slow") == [slow.id]
        refused = await http.get("/api/v1/runs", params={"status": "waiting"})
        assert refused.status_code == 422
    assert [r["id"] for r in await app.workflows.list_runs(status="running")] == [slow.id]
    await slow.cancel()
