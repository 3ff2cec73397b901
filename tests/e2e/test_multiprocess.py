"""Several worker processes on one queue; a worker killed with SIGKILL mid-task."""

from __future__ import annotations

import asyncio
import collections
import signal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.e2e.conftest import Processes, tickbase_env
from tests.support.waiting import wait_until_sync
from tickbase import App, EnqueueRequest

pytestmark = pytest.mark.slow


def unfinished(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(
        "SELECT count(*) FROM tickbase.tasks WHERE status IN ('pending', 'running', 'retrying')"
    ).fetchone()
    assert row is not None
    return int(row[0])


def read_runs(path: Path) -> list[tuple[int, int]]:
    if not path.exists():
        return []
    return [tuple(map(int, line.split())) for line in path.read_text().splitlines() if line]  # type: ignore[misc]


def rescue_env(database_url: str, tmp_path: Path) -> tuple[dict[str, str], Path, Path]:
    """Worker environment with short leases, and the files its handlers log to."""
    starts, runs = tmp_path / "starts.txt", tmp_path / "runs.txt"
    env = tickbase_env(
        database_url,
        TICKBASE_TEST_STARTS=str(starts),
        TICKBASE_TEST_RUNS=str(runs),
        TICKBASE_LEASE_SECONDS="2",
        TICKBASE_POLL_INTERVAL="0.2",
    )
    return env, starts, runs


def enqueue_batch(conn: psycopg.Connection[Any], task_type: str, payloads: list[str]) -> None:
    conn.execute(
        "INSERT INTO tickbase.tasks (task_type, payload, max_attempts)"
        " SELECT %s, p::jsonb, 4 FROM unnest(%s::text[]) AS p",
        (task_type, payloads),
    )


def test_four_workers_run_each_task_exactly_once(
    database_url: str, sql_conn: psycopg.Connection[Any], processes: Processes, tmp_path: Path
) -> None:
    total = 20_000

    async def enqueue() -> None:
        async with App(database_url) as app:
            for start in range(0, total, 5_000):
                await app.enqueue_many(
                    [EnqueueRequest("test.record", {"n": n}) for n in range(start, start + 5_000)]
                )

    asyncio.run(enqueue())
    runs = tmp_path / "runs.txt"
    env = tickbase_env(database_url, TICKBASE_TEST_RUNS=str(runs), TICKBASE_POLL_INTERVAL="0.2")
    workers = [
        processes.start("worker", "--app", "tests.support.apps:app", "--concurrency", "50", env=env)
        for _ in range(4)
    ]
    wait_until_sync(lambda: unfinished(sql_conn) == 0, timeout=180, message="all tasks finished")
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
    for worker in workers:
        assert worker.wait(timeout=30) == 0

    executions = read_runs(runs)
    per_task = collections.Counter(n for n, _ in executions)
    assert len(per_task) == total
    assert set(per_task.values()) == {1}, "some task ran more than once"
    per_process = collections.Counter(pid for _, pid in executions)
    assert len(per_process) == 4, f"work was not shared: {per_process}"
    rows = sql_conn.execute(
        "SELECT status, attempts, count(*) FROM tickbase.tasks GROUP BY status, attempts"
    ).fetchall()
    assert rows == [("succeeded", 1, total)]
    started = sql_conn.execute(
        "SELECT count(*), count(DISTINCT task_id) FROM tickbase.task_events WHERE event = 'started'"
    ).fetchone()
    assert started == (total, total)


def test_killed_worker_tasks_finish_elsewhere_exactly_once(
    database_url: str, sql_conn: psycopg.Connection[Any], processes: Processes, tmp_path: Path
) -> None:
    count = 20
    enqueue_batch(sql_conn, "test.slow", [f'{{"n": {n}, "seconds": 1.5}}' for n in range(count)])
    env, starts, runs = rescue_env(database_url, tmp_path)
    doomed = processes.start("worker", "--app", "tests.support.apps:app", "-c", "50", env=env)
    wait_until_sync(
        lambda: len(read_runs(starts)) == count, timeout=30, message="all tasks started"
    )
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(timeout=10)
    assert read_runs(runs) == [], "the killed worker must not have finished anything"
    running = sql_conn.execute(
        "SELECT count(*) FROM tickbase.tasks WHERE status = 'running'"
    ).fetchone()
    assert running == (count,)

    rescuer = processes.start("worker", "--app", "tests.support.apps:app", "-c", "50", env=env)
    wait_until_sync(lambda: unfinished(sql_conn) == 0, timeout=60, message="rescued tasks finished")
    rescuer.send_signal(signal.SIGTERM)
    assert rescuer.wait(timeout=30) == 0

    finished = read_runs(runs)
    assert sorted(n for n, _ in finished) == list(range(count)), "each task finished exactly once"
    assert {pid for _, pid in finished} == {rescuer.pid}
    assert all(pid != doomed.pid for _, pid in finished)
    rows = sql_conn.execute(
        "SELECT status, attempts, count(*) FROM tickbase.tasks GROUP BY status, attempts"
    ).fetchall()
    assert rows == [("succeeded", 2, count)]
    rescued = sql_conn.execute(
        "SELECT count(DISTINCT task_id) FROM tickbase.task_events WHERE event = 'rescued'"
    ).fetchone()
    assert rescued == (count,)


def test_workflow_survives_a_killed_worker(
    database_url: str, sql_conn: psycopg.Connection[Any], processes: Processes, tmp_path: Path
) -> None:
    from tests.conftest import fast_settings
    from tests.support import apps

    children = 8

    async def start_run() -> int:
        apps.app.settings = fast_settings(database_url)
        async with apps.app as app:
            wf = app.workflow("rescued", mode="parallel", max_parallel=children)
            wf.step("root", apps.wf_step, payload={"n": 0})
            for n in range(1, children + 1):
                wf.step(
                    f"child-{n}", apps.wf_step, after=["root"], payload={"n": n, "seconds": 1.5}
                )
            wf.step(
                "final",
                apps.wf_step,
                after=[f"child-{n}" for n in range(1, children + 1)],
                payload={"n": 99},
            )
            run = await wf.run()
            return run.id

    run_id = asyncio.run(start_run())
    env, starts, runs = rescue_env(database_url, tmp_path)
    doomed = processes.start("worker", "--app", "tests.support.apps:app", "-c", "20", env=env)
    wait_until_sync(
        lambda: len({n for n, _ in read_runs(starts)} - {0}) == children,
        timeout=30,
        message="children started",
    )
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(timeout=10)
    rescuer = processes.start("worker", "--app", "tests.support.apps:app", "-c", "20", env=env)

    def run_status() -> str:
        row = sql_conn.execute(
            "SELECT status FROM tickbase.workflow_runs WHERE id = %s", (run_id,)
        ).fetchone()
        return str(row[0]) if row and row[0] != "running" else ""

    assert wait_until_sync(run_status, timeout=60, message="the run ended") == "succeeded"
    rescuer.send_signal(signal.SIGTERM)
    assert rescuer.wait(timeout=30) == 0
    succeeded = collections.Counter(n for n, _ in read_runs(runs))
    assert sorted(succeeded) == [0, *range(1, children + 1), 99]
    assert set(succeeded.values()) == {1}, "a step succeeded twice"
    steps = sql_conn.execute(
        "SELECT status, count(*) FROM tickbase.workflow_steps WHERE run_id = %s GROUP BY status",
        (run_id,),
    ).fetchall()
    assert steps == [("succeeded", children + 2)]
    retried = sql_conn.execute(
        "SELECT count(*) FROM tickbase.tasks WHERE workflow_run_id = %s AND attempts = 2", (run_id,)
    ).fetchone()
    assert retried == (children,)  # the killed worker's steps ran again, once
