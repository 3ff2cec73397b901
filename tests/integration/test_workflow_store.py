"""Stored workflows and their runs, without a worker.

A saved definition can be read, listed, replaced and deleted (its runs stay);
runs list newest first and page; a missing run is named; waiting on a run
that cannot end in time says it is the workflow run that did not finish (not
a task of the same number); a step must name a task.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

import tickbase
from tests.conftest import fast_settings
from tickbase.errors import InvalidWorkflow, ResultTimeout, WorkflowRunNotFound


@pytest.fixture
async def wf_app(database_url: str) -> Any:
    app = tickbase.App(settings=fast_settings(database_url))
    async with app:
        yield app


async def test_a_saved_definition_is_read_replaced_and_deleted(
    wf_app: tickbase.App, sql_conn: psycopg.Connection[Any]
) -> None:
    runs = wf_app.workflows
    assert await runs.get_workflow("etl") is None and await runs.list_workflows() == []
    await wf_app.workflow("etl").step("a", "tickbase.noop").save()
    stored = await runs.get_workflow("etl")
    assert stored is not None and stored["name"] == "etl" and stored["mode"] == "serial"

    replaced = wf_app.workflow("etl", mode="parallel", max_parallel=2)
    replaced.step("a", "tickbase.noop").step("b", "tickbase.noop", after=["a"])
    await replaced.save()
    [listed] = await runs.list_workflows()
    assert (listed["name"], listed["mode"], listed["max_parallel"]) == ("etl", "parallel", 2)

    run = await runs.start("etl")
    assert await runs.delete_workflow("etl") is True
    assert await runs.delete_workflow("etl") is False
    assert await runs.get_workflow("etl") is None
    assert (await runs.get(run.id)).workflow == "etl"  # the run stays


async def test_runs_list_newest_first_and_page(wf_app: tickbase.App) -> None:
    await wf_app.workflow("a").step("s", "tickbase.noop").save()
    await wf_app.workflow("b").step("s", "tickbase.noop").save()
    started = [(await wf_app.workflows.start(name)).id for name in ("a", "b", "a", "a")]
    runs = wf_app.workflows
    assert [r["id"] for r in await runs.list_runs()] == started[::-1]
    only_a = [r["id"] for r in await runs.list_runs("a")]
    assert only_a == [started[3], started[2], started[0]]
    first = await runs.list_runs("a", limit=2)
    rest = await runs.list_runs("a", limit=2, before_id=first[-1]["id"])
    assert [r["id"] for r in first + rest] == only_a
    assert await runs.list_runs("nope") == []


async def test_a_new_run_has_its_first_steps_enqueued(wf_app: tickbase.App) -> None:
    wf = wf_app.workflow("chain").step("a", "tickbase.noop", payload={"n": 1})
    wf.step("b", "tickbase.noop", after=["a"])
    run = await wf.run()
    assert run.status == "running" and run.workflow == "chain" and run.finished_at is None
    assert set(run.steps) == {"a", "b"}
    a, b = run.steps["a"], run.steps["b"]
    assert a.task_id is not None and a.task_status == "pending"
    assert b.task_id is None and b.duration is None
    task = await wf_app.queue.get(a.task_id)
    assert (task.workflow_run_id, task.step, task.payload) == (run.id, "a", {"n": 1})


async def test_a_missing_run_is_named(wf_app: tickbase.App) -> None:
    with pytest.raises(WorkflowRunNotFound) as missing:
        await wf_app.workflows.get(987654)
    assert str(missing.value) == "workflow run 987654 does not exist"
    assert missing.value.run_id == 987654


async def test_waiting_out_of_time_names_the_run(wf_app: tickbase.App) -> None:
    run = await wf_app.workflow("slow").step("a", "tickbase.noop").run()
    with pytest.raises(ResultTimeout) as timed_out:
        await run.wait(timeout=0)
    assert str(timed_out.value) == (
        f"workflow run {run.id} did not finish within 0 s (it is running)"
    )
    assert timed_out.value.status == "running"
    assert await run.cancel() == "cancelled"
    assert await run.wait(timeout=0) == "cancelled"  # ended: no timeout any more


@pytest.mark.parametrize("task", [42, None, object()])
def test_a_step_must_name_a_task(task: Any) -> None:
    app = tickbase.App()
    with pytest.raises(InvalidWorkflow) as refused:
        app.workflow("w").step("a", task)
    assert "step 'a': task must be a task function or a task type name" in str(refused.value)


def test_a_step_takes_the_task_functions_name() -> None:
    app = tickbase.App()

    @app.task(name="etl.load", queue="etl", retries=2)
    async def load() -> None: ...

    wf = app.workflow("w").step("a", load)
    [step] = wf.steps
    assert step.task_type == "etl.load"
