"""Queue operations around the main path, on a real PostgreSQL.

One enqueue returns the row as stored, or the unfinished holder of its dedupe
key untouched; a retry whose dedupe key another task took meanwhile is refused
with a reason saying when it may be retried, and adds nothing; lookups of
missing tasks name the task; heartbeats renew only the caller's own leases and
say which tasks to stop; the next due time and the counts are what is stored.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

import tickbase
from tickbase import EnqueueRequest, InvalidTask, TaskNotFound, TaskStatus
from tickbase.queue.models import ClaimedTask
from tickbase.queue.repository import TaskQueue

NODE = "edge-node"


async def claim(app: tickbase.App, limit: int = 10, node: str = NODE) -> list[ClaimedTask]:
    async with app.pool.connection() as conn:
        return await app.queue.claim(conn, node_id=node, limit=limit, queues=None, lease_seconds=30)


def task_count(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM tickbase.tasks").fetchone()
    assert row is not None
    return int(row[0])


async def test_enqueue_returning_gives_the_row_as_stored(app: tickbase.App) -> None:
    run_at = datetime.now(UTC) + timedelta(hours=1)
    task, created = await app.queue.enqueue_returning(
        EnqueueRequest(
            "bars.fetch",
            {"symbol": "ESZ5"},
            queue="marketdata",
            priority=7,
            run_at=run_at,
            max_attempts=4,
            dedupe_key="bars:ESZ5",
        )
    )
    assert created is True
    assert (task.task_type, task.payload, task.queue, task.priority) == (
        "bars.fetch",
        {"symbol": "ESZ5"},
        "marketdata",
        7,
    )
    assert (task.status, task.max_attempts, task.dedupe_key) == (
        TaskStatus.PENDING,
        4,
        "bars:ESZ5",
    )
    assert task.run_at == run_at
    assert await app.queue.get(task.id) == task


async def test_enqueue_returning_a_held_dedupe_key_returns_the_holder_untouched(
    app: tickbase.App, sql_conn: psycopg.Connection[Any]
) -> None:
    first, _ = await app.queue.enqueue_returning(
        EnqueueRequest("t", {"v": 1}, priority=1, dedupe_key="k")
    )
    again, created = await app.queue.enqueue_returning(
        EnqueueRequest("t", {"v": 2}, priority=9, dedupe_key="k")
    )
    assert created is False
    assert again == first and again.payload == {"v": 1} and again.priority == 1
    assert task_count(sql_conn) == 1


async def test_empty_batches_write_nothing(
    app: tickbase.App, sql_conn: psycopg.Connection[Any]
) -> None:
    assert await app.queue.enqueue_many([]) == []
    async with app.pool.connection() as conn:
        assert await TaskQueue.enqueue_linked(conn, []) == []
        assert await app.queue.enqueue_many([], conn=conn) == []
    assert task_count(sql_conn) == 0


async def test_enqueue_on_the_callers_transaction_rolls_back_with_it(
    app: tickbase.App, sql_conn: psycopg.Connection[Any]
) -> None:
    class Abort(Exception):
        pass

    with pytest.raises(Abort):
        async with app.pool.connection() as conn, conn.transaction():
            [(task_id, created)] = await app.queue.enqueue_many([EnqueueRequest("t")], conn=conn)
            assert created and task_id > 0
            raise Abort
    assert task_count(sql_conn) == 0


async def test_a_retry_whose_dedupe_key_was_taken_is_refused_and_adds_nothing(
    app: tickbase.App, sql_conn: psycopg.Connection[Any]
) -> None:
    [old] = await app.enqueue_many([EnqueueRequest("t", dedupe_key="nightly")])
    await app.queue.cancel(old.id)
    [holder] = await app.enqueue_many([EnqueueRequest("t", dedupe_key="nightly")])
    assert holder.created and holder.id != old.id
    with pytest.raises(InvalidTask) as refused:
        await app.queue.retry(old.id)
    assert str(refused.value).endswith(f": retry task {old.id} once that one ends")
    assert refused.value.field == "dedupe_key" and refused.value.value == "nightly"
    assert task_count(sql_conn) == 2
    assert (await app.queue.get(old.id)).status is TaskStatus.CANCELLED

    await app.queue.cancel(holder.id)  # the key is free again: the retry goes through
    copy = await app.queue.get(await app.queue.retry(old.id))
    assert copy.dedupe_key == "nightly" and copy.status is TaskStatus.PENDING


async def test_missing_tasks_are_named(app: tickbase.App) -> None:
    with pytest.raises(TaskNotFound) as missing:
        await app.queue.get(424242)
    assert "424242" in str(missing.value)
    with pytest.raises(TaskNotFound, match="424242"):
        await app.queue.retry(424242)


async def test_heartbeat_renews_own_leases_and_names_tasks_to_stop(
    app: tickbase.App, sql_conn: psycopg.Connection[Any]
) -> None:
    handles = await app.enqueue_many([EnqueueRequest("t", {"n": n}) for n in range(3)])
    claimed = await claim(app)
    assert sorted(t.id for t in claimed) == sorted(h.id for h in handles)
    a, b, c = (h.id for h in handles)
    sql_conn.execute("UPDATE tickbase.tasks SET lease_expires_at = now() + interval '1 second'")
    await app.queue.cancel(b)  # running: a cancel is requested
    async with app.pool.connection() as conn:
        stop = await app.queue.heartbeat(conn, NODE, [a, b], lease_seconds=600)
        assert stop == [(b, False)]
        # Another node does not own these: it is told to stop them all, as lost.
        assert sorted(await app.queue.heartbeat(conn, "intruder", [a, c], 600)) == [
            (a, True),
            (c, True),
        ]
    leases = dict(
        sql_conn.execute(
            "SELECT id, lease_expires_at > now() + interval '5 minutes'"
            " FROM tickbase.tasks WHERE status = 'running'"
        ).fetchall()
    )
    assert leases[a] is True and leases[c] is False  # only the owner's heartbeat renews
    assert (await app.queue.get(a)).node_id == NODE  # not taken over either


async def test_next_run_at_is_the_earliest_waiting_task_of_those_queues(
    app: tickbase.App,
) -> None:
    soon = datetime.now(UTC) + timedelta(minutes=5)
    later = soon + timedelta(hours=1)
    await app.enqueue_many(
        [
            EnqueueRequest("t", queue="alpha", run_at=later),
            EnqueueRequest("u", queue="beta", run_at=soon),
            EnqueueRequest("t", queue="alpha"),  # due now: not waiting
        ]
    )
    async with app.pool.connection() as conn:
        assert await app.queue.next_run_at(conn, None) == soon
        assert await app.queue.next_run_at(conn, ["alpha"]) == later
        assert await app.queue.next_run_at(conn, ["alpha", "beta"], task_types=["t"]) == later
        assert await app.queue.next_run_at(conn, ["gamma"]) is None
        assert await app.queue.next_run_at(conn, None, task_types=[]) is None


async def test_counts_by_queue_and_status(app: tickbase.App) -> None:
    assert await app.queue.count_unfinished() == 0 and await app.queue.counts() == []
    handles = await app.enqueue_many(
        [EnqueueRequest("t", queue="alpha") for _ in range(3)] + [EnqueueRequest("t")]
    )
    await app.queue.cancel(handles[0].id)
    assert await app.queue.count_unfinished() == 3
    assert sorted(await app.queue.counts()) == [
        ("alpha", "cancelled", 1),
        ("alpha", "pending", 2),
        ("default", "pending", 1),
    ]
