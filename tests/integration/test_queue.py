"""The queue against a real PostgreSQL: enqueue, claim order, transitions, dedupe, rescue."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

import tickbase
from tickbase import EnqueueRequest, InvalidTask, InvalidTransition, TaskNotFound, TaskStatus
from tickbase.queue.models import Outcome, OutcomeKind
from tickbase.queue.repository import TaskQueue

NODE = "test-node"


async def claim(app: tickbase.App, limit: int = 100, queues: list[str] | None = None) -> list[Any]:
    async with app.pool.connection() as conn:
        return await app.queue.claim(
            conn, node_id=NODE, limit=limit, queues=queues, lease_seconds=30
        )


async def finish(
    app: tickbase.App, reported: list[tuple[int, int, str, str | None, str | None]]
) -> int:
    async with app.pool.connection() as conn:
        outcomes = [
            Outcome(task_id, attempt, OutcomeKind(kind), result, error)
            for task_id, attempt, kind, result, error in reported
        ]
        return await app.queue.finish_many(conn, NODE, outcomes)


def count(conn: psycopg.Connection[Any], where: str = "true") -> int:
    row = conn.execute(
        f"SELECT count(*) FROM tickbase.tasks WHERE {where}"
    ).fetchone()  # test-only SQL
    assert row is not None
    return int(row[0])


async def test_claim_order_is_priority_then_fifo(app: tickbase.App) -> None:
    requests = [
        EnqueueRequest("t", {"n": 1}, priority=5),
        EnqueueRequest("t", {"n": 2}, priority=0),
        EnqueueRequest("t", {"n": 3}, priority=5),
        EnqueueRequest("t", {"n": 4}, priority=0),
        EnqueueRequest("t", {"n": 5}, priority=1000),
    ]
    for request in requests:  # one statement each: distinct created/run_at times
        await app.enqueue_many([request])
    claimed = await claim(app)
    assert [t.payload["n"] for t in claimed] == [2, 4, 1, 3, 5]


async def test_run_at_is_respected(app: tickbase.App) -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    await app.enqueue_many([EnqueueRequest("t", {"n": "later"}, run_at=later)])
    await app.enqueue_many([EnqueueRequest("t", {"n": "delayed"}, delay=3600)])
    [now_handle] = await app.enqueue_many([EnqueueRequest("t", {"n": "now"})])
    claimed = await claim(app)
    assert [t.id for t in claimed] == [now_handle.id]
    task = await app.queue.get(now_handle.id)
    assert task.status is TaskStatus.RUNNING and task.lease_expires_at is not None


async def test_named_queues_only_claim_their_own(app: tickbase.App) -> None:
    await app.enqueue_many(
        [EnqueueRequest("t", {"q": q}, queue=q) for q in ("alpha", "beta", "alpha", "gamma")]
    )
    claimed = await claim(app, queues=["alpha", "gamma"])
    assert sorted(t.payload["q"] for t in claimed) == ["alpha", "alpha", "gamma"]


async def test_batch_of_ten_thousand_in_one_call(
    app: tickbase.App, sql_conn: psycopg.Connection[Any]
) -> None:
    handles = await app.enqueue_many([EnqueueRequest("t", {"i": i}) for i in range(10_000)])
    assert len(handles) == 10_000
    assert len({h.id for h in handles}) == 10_000
    assert count(sql_conn) == 10_000
    # ids map to the input positions
    rows = sql_conn.execute(
        "SELECT id, (payload->>'i')::int FROM tickbase.tasks WHERE id = ANY(%s)",
        ([handles[0].id, handles[4321].id, handles[-1].id],),
    ).fetchall()
    assert dict(rows) == {handles[0].id: 0, handles[4321].id: 4321, handles[-1].id: 9999}
    created = sql_conn.execute("SELECT count(DISTINCT created_at) FROM tickbase.tasks").fetchone()
    assert created == (1,)  # one statement, one transaction


async def test_dedupe_key_returns_the_unfinished_task(
    app: tickbase.App, sql_conn: psycopg.Connection[Any]
) -> None:
    [first] = await app.enqueue_many([EnqueueRequest("t", {"v": 1}, dedupe_key="bars:ESZ5")])
    [again] = await app.enqueue_many([EnqueueRequest("t", {"v": 2}, dedupe_key="bars:ESZ5")])
    assert first.created and not again.created
    assert again.id == first.id
    batch = await app.enqueue_many(
        [
            EnqueueRequest("t", dedupe_key="k2"),
            EnqueueRequest("t", dedupe_key="k2"),
            EnqueueRequest("t"),
        ]
    )
    assert batch[0].id == batch[1].id and batch[0].created and not batch[1].created
    assert count(sql_conn) == 3
    # once final, the key is free again
    [task] = await claim(app, limit=1)
    assert task.id == first.id
    assert await finish(app, [(task.id, task.attempt, "succeeded", "1", None)]) == 1
    [fresh] = await app.enqueue_many([EnqueueRequest("t", dedupe_key="bars:ESZ5")])
    assert fresh.created and fresh.id != first.id


async def test_concurrent_dedupe_enqueues_make_one_task(
    app: tickbase.App, sql_conn: psycopg.Connection[Any]
) -> None:
    results = await asyncio.gather(
        *(app.enqueue_many([EnqueueRequest("t", dedupe_key="once")]) for _ in range(8))
    )
    ids = {handles[0].id for handles in results}
    assert len(ids) == 1
    assert count(sql_conn, "dedupe_key = 'once'") == 1


async def test_bad_input_stores_nothing(
    app: tickbase.App, sql_conn: psycopg.Connection[Any]
) -> None:
    await app.enqueue_many([EnqueueRequest("t", {"keep": True})])
    with pytest.raises(InvalidTask, match="priority"):
        await app.defer("t", {}, priority=-5)
    with pytest.raises(InvalidTask, match="payload"):
        await app.defer("t", {"bad": object()})
    with pytest.raises(InvalidTask, match="queue name"):
        await app.defer("t", {}, queue="no spaces")
    with pytest.raises(InvalidTask, match="run_at"):
        await app.defer("t", {}, run_at="2026-01-01")
    assert count(sql_conn) == 1
    row = sql_conn.execute("SELECT payload FROM tickbase.tasks").fetchone()
    assert row == ({"keep": True},)


async def test_database_constraints_back_the_checks(sql_conn: psycopg.Connection[Any]) -> None:
    for column, value in [("priority", -1), ("queue", "a b"), ("max_attempts", 0)]:
        with pytest.raises(psycopg.errors.CheckViolation):
            sql_conn.execute(
                f"INSERT INTO tickbase.tasks (task_type, {column}) VALUES ('t', %s)",  # test-only SQL
                (value,),
            )
    with pytest.raises(psycopg.errors.CheckViolation, match="tasks_finished_at_when_final"):
        sql_conn.execute("INSERT INTO tickbase.tasks (task_type, status) VALUES ('t', 'succeeded')")


async def test_one_notify_per_enqueue_statement(app: tickbase.App, database_url: str) -> None:
    listener = await psycopg.AsyncConnection.connect(database_url, autocommit=True)
    async with listener:
        await listener.execute("LISTEN tickbase_enqueued")
        await app.enqueue_many([EnqueueRequest("t", queue=q) for q in ["a", "b", "a"] * 100])
        await app.enqueue_many([EnqueueRequest("t", queue="c")])
        received = []
        async for notify in listener.notifies(timeout=1.0, stop_after=3):
            received.append(notify.payload)
    assert sorted(received[0].split(",")) == ["a", "b"]
    assert received[1:] == ["c"]


async def test_finish_outcomes_and_guards(
    app: tickbase.App, sql_conn: psycopg.Connection[Any]
) -> None:
    handles = await app.enqueue_many(
        [EnqueueRequest("t", {"n": i}, max_attempts=2, retry_delay=60) for i in range(4)]
    )
    tasks = await claim(app)
    by_n = {t.payload["n"]: t for t in tasks}
    error = '{"type": "ValueError", "message": "boom", "traceback": null}'
    accepted = await finish(
        app,
        [
            (by_n[0].id, 1, "succeeded", '{"ok": 1}', None),
            (by_n[1].id, 1, "failed", None, error),
            (by_n[2].id, 1, "failed_final", None, error),
            (by_n[3].id, 1, "cancelled", None, None),
        ],
    )
    assert accepted == 4
    states = {h.id: await app.queue.get(h.id) for h in handles}
    assert states[handles[0].id].status is TaskStatus.SUCCEEDED
    assert states[handles[0].id].result == {"ok": 1}
    retrying = states[handles[1].id]
    assert retrying.status is TaskStatus.RETRYING and retrying.finished_at is None
    # exponential backoff from 60 s with +-25% jitter
    delay = (retrying.run_at - datetime.now(UTC)).total_seconds()
    assert 40 < delay < 80
    assert retrying.error == {"type": "ValueError", "message": "boom", "traceback": None}
    assert states[handles[2].id].status is TaskStatus.FAILED
    assert states[handles[3].id].status is TaskStatus.CANCELLED
    # a second report for the same attempt is refused: final states never change
    assert await finish(app, [(by_n[0].id, 1, "failed", None, error)]) == 0
    assert (await app.queue.get(handles[0].id)).status is TaskStatus.SUCCEEDED
    events = sql_conn.execute(
        "SELECT event FROM tickbase.task_events WHERE task_id = %s ORDER BY at", (handles[1].id,)
    ).fetchall()
    assert [e[0] for e in events] == ["started", "retrying"]


async def test_last_attempt_failure_is_final(app: tickbase.App) -> None:
    [handle] = await app.enqueue_many([EnqueueRequest("t", max_attempts=1)])
    [task] = await claim(app)
    await finish(app, [(task.id, task.attempt, "failed", None, '{"type": "E", "message": "x"}')])
    final = await app.queue.get(handle.id)
    assert final.status is TaskStatus.FAILED and final.finished_at is not None


async def test_cancel_pending_and_running(app: tickbase.App) -> None:
    [pending, running] = await app.enqueue_many(
        [EnqueueRequest("t", priority=1), EnqueueRequest("t")]
    )
    [claimed] = await claim(app, limit=1)
    assert claimed.id == running.id
    assert await app.queue.cancel(pending.id) is TaskStatus.CANCELLED
    assert await app.queue.cancel(running.id) is TaskStatus.RUNNING
    task = await app.queue.get(running.id)
    assert task.cancel_requested
    with pytest.raises(InvalidTransition, match="cannot cancel"):
        await app.queue.cancel(pending.id)
    with pytest.raises(TaskNotFound):
        await app.queue.cancel(999_999)


async def test_retry_copies_a_failed_task(app: tickbase.App) -> None:
    [handle] = await app.enqueue_many([EnqueueRequest("t", {"x": 1}, queue="q1", priority=3)])
    with pytest.raises(InvalidTransition, match="retry"):
        await app.queue.retry(handle.id)
    await app.queue.cancel(handle.id)
    new_id = await app.queue.retry(handle.id)
    copy = await app.queue.get(new_id)
    assert (copy.payload, copy.queue, copy.priority, copy.status) == (
        {"x": 1},
        "q1",
        3,
        TaskStatus.PENDING,
    )
    assert (await app.queue.get(handle.id)).status is TaskStatus.CANCELLED


async def test_expired_leases_are_rescued(app: tickbase.App) -> None:
    handles = await app.enqueue_many(
        [EnqueueRequest("t", max_attempts=2), EnqueueRequest("t", max_attempts=1)]
    )
    await claim(app)
    assert await app.queue.rescue() == []  # leases still valid
    later = datetime.now(UTC) + timedelta(minutes=5)
    rescued = dict(await app.queue.rescue(node_id="rescuer", now=later))
    assert rescued == {handles[0].id: "retrying", handles[1].id: "failed"}
    again = await app.queue.get(handles[0].id)
    assert again.error is not None and again.error["type"] == "LeaseExpired"
    failed = await app.queue.get(handles[1].id)
    assert failed.finished_at is not None
    # the dead node's late report is refused (the attempt moved on / the task is final)
    assert await finish(app, [(handles[1].id, 1, "succeeded", "1", None)]) == 0
    [reclaimed] = await claim(app)
    assert reclaimed.id == handles[0].id and reclaimed.attempt == 2


async def test_prune_removes_old_finished_tasks_only(
    app: tickbase.App, sql_conn: psycopg.Connection[Any]
) -> None:
    handles = await app.enqueue_many([EnqueueRequest("t") for _ in range(5)])
    for handle in handles[:3]:
        await app.queue.cancel(handle.id)
    later = datetime.now(UTC) + timedelta(days=8)
    assert await app.queue.prune(older_than_days=7, batch_size=2, now=later) == 3
    assert count(sql_conn) == 2
    remaining = sql_conn.execute(
        "SELECT count(*) FROM tickbase.task_events WHERE task_id = %s", (handles[0].id,)
    )
    assert remaining.fetchone() == (0,)


async def test_listing_filters_and_pages(app: tickbase.App) -> None:
    await app.enqueue_many([EnqueueRequest("a", queue="q1") for _ in range(5)])
    await app.enqueue_many([EnqueueRequest("b", queue="q2") for _ in range(3)])
    page1 = await app.queue.list_tasks(queue="q1", limit=3)
    page2 = await app.queue.list_tasks(queue="q1", limit=3, before_id=page1[-1].id)
    assert len(page1) == 3 and len(page2) == 2
    assert all(t.task_type == "a" for t in page1 + page2)
    assert [t.id for t in page1 + page2] == sorted((t.id for t in page1 + page2), reverse=True)
    with pytest.raises(InvalidTask, match="status filter"):
        await app.queue.list_tasks(status="done")


async def test_task_queue_needs_no_app(database_url: str) -> None:
    from tickbase.db.pool import create_pool

    pool = create_pool(database_url, max_size=2)
    async with pool:
        queue = TaskQueue(pool)
        [(task_id, created)] = await queue.enqueue_many([EnqueueRequest("t")])
        assert created and (await queue.get(task_id)).status is TaskStatus.PENDING
