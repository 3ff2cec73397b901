"""Workflows on a real database with an in-process worker: order, overlap, failure policies."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psycopg
import pytest

import tickbase
from tests.conftest import fast_settings
from tests.integration.test_worker import running_worker
from tickbase.errors import InvalidWorkflow
from tickbase.worker.context import TaskContext


@pytest.fixture
def wf_app(database_url: str) -> tickbase.App:
    return tickbase.App(settings=fast_settings(database_url))


def count(conn: psycopg.Connection[Any], sql: str) -> int:
    row = conn.execute(sql).fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize("mode", ["serial", "parallel"])
async def test_diamond(wf_app: tickbase.App, mode: str) -> None:
    app = wf_app
    spans: dict[str, tuple[float, float]] = {}

    @app.task(name="wf.work")
    async def work(label: str, context: TaskContext) -> dict[str, Any]:
        start = time.monotonic()
        await asyncio.sleep(0.2)
        spans[label] = (start, time.monotonic())
        return {"label": label, "saw": sorted(context.inputs)}

    wf = app.workflow(f"diamond-{mode}", mode=mode)
    wf.step("a", work, payload={"label": "a"})
    wf.step("b", work, after=["a"], payload={"label": "b"})
    wf.step("c", work, after=["a"], payload={"label": "c"})
    wf.step("d", work, after=["b", "c"], payload={"label": "d"})
    async with app, running_worker(app, concurrency=10):
        run = await wf.run()
        assert await run.wait(timeout=20) == "succeeded"
    assert {name: s.status for name, s in run.steps.items()} == dict.fromkeys("abcd", "succeeded")
    assert run.steps["d"].result == {"label": "d", "saw": ["b", "c"]}
    assert all((s.duration or 0) >= 0.2 and s.attempts == 1 for s in run.steps.values())
    assert spans["a"][1] <= spans["b"][0] and spans["a"][1] <= spans["c"][0]
    assert max(spans["b"][1], spans["c"][1]) <= spans["d"][0]
    b_and_c_overlap = spans["b"][0] < spans["c"][1] and spans["c"][0] < spans["b"][1]
    if mode == "serial":
        assert not b_and_c_overlap
        assert spans["b"][1] <= spans["c"][0]  # declaration order breaks the tie
    else:
        assert b_and_c_overlap


async def test_fan_out_respects_max_parallel(wf_app: tickbase.App) -> None:
    app = wf_app
    running = 0
    peak = 0

    @app.task(name="wf.leaf")
    async def leaf(n: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1
        return n

    wf = app.workflow("fan-out", mode="parallel", max_parallel=10)
    for n in range(200):
        wf.step(f"leaf-{n}", leaf, payload={"n": n})
    async with app, running_worker(app, concurrency=50):
        run = await wf.run()
        assert await run.wait(timeout=60) == "succeeded"
    assert peak == 10
    assert all(s.status == "succeeded" for s in run.steps.values()) and len(run.steps) == 200


async def test_stop_policy_cancels_the_rest(
    wf_app: tickbase.App, sql_conn: psycopg.Connection[Any]
) -> None:
    app = wf_app

    @app.task(name="wf.ok")
    async def ok() -> str:
        return "ok"

    @app.task(name="wf.boom", retries=1, retry_delay=0.01)
    async def boom() -> None:
        raise RuntimeError("bad data")

    wf = app.workflow("stop", mode="serial", on_failure="stop")
    wf.step("first", ok).step("broken", boom, after=["first"]).step("later", ok, after=["first"])
    wf.step("last", ok, after=["later"])
    async with app, running_worker(app):
        run = await wf.run()
        assert await run.wait(timeout=20) == "failed"
    states = {name: s.status for name, s in run.steps.items()}
    assert states == {
        "first": "succeeded",
        "broken": "failed",
        "later": "cancelled",
        "last": "cancelled",
    }
    attempts = count(sql_conn, "SELECT attempts FROM tickbase.tasks WHERE step = 'broken'")
    assert attempts == 2  # retried once, then failed for good


async def test_continue_policy_skips_only_downstream(wf_app: tickbase.App) -> None:
    app = wf_app
    calls: dict[str, int] = {}

    @app.task(name="wf.flaky", retries=2, retry_delay=0.01)
    async def flaky(key: str, fail_times: int) -> str:
        calls[key] = calls.get(key, 0) + 1
        if calls[key] <= fail_times:
            raise ConnectionError(f"{key} attempt {calls[key]}")
        return key

    wf = app.workflow("continue", mode="parallel", on_failure="continue")
    wf.step("retried", flaky, payload={"key": "retried", "fail_times": 2})
    wf.step("dead", flaky, payload={"key": "dead", "fail_times": 5})
    wf.step("after-dead", flaky, after=["dead"], payload={"key": "x", "fail_times": 0})
    wf.step("after-after", flaky, after=["after-dead"], payload={"key": "y", "fail_times": 0})
    wf.step("after-retried", flaky, after=["retried"], payload={"key": "z", "fail_times": 0})
    async with app, running_worker(app):
        run = await wf.run()
        assert await run.wait(timeout=20) == "failed"
    states = {name: s.status for name, s in run.steps.items()}
    assert states == {
        "retried": "succeeded",
        "dead": "failed",
        "after-dead": "skipped",
        "after-after": "skipped",
        "after-retried": "succeeded",
    }
    assert calls["retried"] == 3 and calls["dead"] == 3


async def test_cancel_a_run(wf_app: tickbase.App) -> None:
    app = wf_app
    started = asyncio.Event()

    @app.task(name="wf.slow")
    async def slow() -> None:
        started.set()
        await asyncio.sleep(30)

    wf = (
        app.workflow("cancel-me", mode="parallel")
        .step("slow", slow)
        .step("next", slow, after=["slow"])
    )
    async with app, running_worker(app):
        run = await wf.run()
        await asyncio.wait_for(started.wait(), 10)
        assert await run.cancel() == "cancelled"

        async def step_ended() -> bool:
            await run.refresh()
            return run.steps["slow"].status == "cancelled"

        from tests.support.waiting import wait_until

        await wait_until(step_ended, timeout=10, message="the running step cancelled")
    assert run.status == "cancelled" and run.steps["next"].status == "cancelled"


@pytest.mark.parametrize(
    ("build", "fragment"),
    [
        (
            lambda wf: wf.step("a", "tickbase.noop", after=["ghost"]),
            "depends on unknown step 'ghost'",
        ),
        (
            lambda wf: wf.step("a", "tickbase.noop").step("a", "tickbase.noop"),
            "duplicate step name 'a'",
        ),
        (
            lambda wf: (
                wf.step("a", "tickbase.noop", after=["c"])
                .step("b", "tickbase.noop", after=["a"])
                .step("c", "tickbase.noop", after=["b"])
            ),
            "cycle: a -> b -> c -> a",
        ),
        (lambda wf: wf.step("a", "no.such.task"), "unknown task type 'no.such.task'"),
        (lambda wf: wf, "empty"),
    ],
)
async def test_bad_definitions_store_nothing(
    wf_app: tickbase.App, sql_conn: psycopg.Connection[Any], build: Any, fragment: str
) -> None:
    async with wf_app as app:
        wf = build(app.workflow("bad"))
        with pytest.raises(InvalidWorkflow) as excinfo:
            await wf.run()
        assert fragment in str(excinfo.value)
    assert count(sql_conn, "SELECT count(*) FROM tickbase.workflows") == 0
    assert count(sql_conn, "SELECT count(*) FROM tickbase.workflow_runs") == 0


async def test_max_parallel_below_one_is_refused(wf_app: tickbase.App) -> None:
    async with wf_app as app:
        with pytest.raises(InvalidWorkflow, match="max_parallel"):
            app.workflow("w", mode="parallel", max_parallel=0).step("a", "tickbase.noop").validate()


async def test_scheduled_workflow_runs_appear_in_the_schedule_history(wf_app: tickbase.App) -> None:
    from datetime import UTC, datetime, timedelta

    from tickbase.scheduler.ticker import Ticker

    app = wf_app

    @app.task(name="wf.step")
    async def step(n: int) -> int:
        return n

    wf = app.workflow("nightly", mode="parallel").step("one", step, payload={"n": 1})
    wf.step("two", step, after=["one"], payload={"n": 2})
    app.schedule("nightly-run", wf, cron="* * * * * *", max_instances=100)
    async with app, running_worker(app):
        await app.sync_schedules()
        ticker = Ticker(app.pool, app.listener, node_id="t", lease_ttl=30)
        assert await ticker.lease.acquire()
        async with app.pool.connection() as conn:
            await conn.execute(
                "UPDATE tickbase.schedules SET next_fire_at = %s WHERE name = 'nightly-run'",
                (datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1),),
            )
        assert await ticker.tick() >= 1
        [execution, *_] = await app.schedules.executions("nightly-run")
        result = await app.handle(execution["id"]).result(timeout=10)
        run = await app.workflows.get(result["workflow_run_id"])
        assert await run.wait(timeout=10) == "succeeded"
    [started] = [r for r in await _runs(app) if r["id"] == result["workflow_run_id"]]
    assert started["schedule_id"] is not None and started["fire_at"] == execution["fire_at"]
    assert started["started_by_task"] == execution["id"]


async def _runs(app: tickbase.App) -> list[dict[str, Any]]:
    async with app:
        return await app.workflows.list_runs("nightly")


async def test_a_retried_starter_task_does_not_start_a_second_run(wf_app: tickbase.App) -> None:
    async with wf_app as app:
        wf = app.workflow("once").step("a", "tickbase.noop")
        await wf.save()
        first = await app.workflows.start("once", started_by_task=4242)
        again = await app.workflows.start("once", started_by_task=4242)
        assert first.id == again.id
        assert len(await app.workflows.list_runs("once")) == 1
