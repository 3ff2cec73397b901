"""Running workflows in the database: start, advance, cancel.

Orchestration state lives in ``tickbase.workflow_runs`` and
``tickbase.workflow_steps``, never in a process's memory. A run advances
inside the same transaction that records a step's end (the worker's report),
under a lock on the run's row: the steps it unblocks are enqueued in that
transaction, so a crash anywhere can neither strand a step (the report is
redone, or the task is rescued and reported again) nor enqueue one twice.

Advancing a run:

1. steps whose task ended take the task's final status;
2. a failed (or cancelled) step: with ``on_failure = stop`` the waiting steps
   are cancelled and the run's unfinished tasks cancelled; with ``continue``
   only the steps downstream of it are skipped;
3. ready steps (all dependencies succeeded) start, in run order, up to the
   capacity: one active step for ``serial``, ``max_parallel`` for
   ``parallel`` (unbounded without it);
4. when no step waits or runs, the run ends: succeeded when every step
   succeeded, failed otherwise.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from psycopg.rows import dict_row

from tickbase.db.pool import AsyncConn
from tickbase.db.sqlfile import load_queries
from tickbase.errors import InvalidWorkflow
from tickbase.queue.models import TASK_OPTIONS, EnqueueRequest, LinkedTask
from tickbase.queue.repository import TaskQueue
from tickbase.workflows.dag import StepSpec, downstream

Q = load_queries("tickbase.workflows")

FINAL_TASK = ("succeeded", "failed", "cancelled")


async def start_run(
    conn: AsyncConn,
    workflow: str,
    *,
    schedule_id: int | None = None,
    fire_at: datetime | None = None,
    started_by_task: int | None = None,
) -> int:
    """Create a run of the stored workflow and enqueue its first steps.

    With ``started_by_task``, a second call for the same task returns the run
    the first one started. ``conn`` must be inside a transaction (the run and
    its first tasks commit together).
    """
    cursor = await conn.execute(
        Q["workflow_run_create"],
        {
            "name": workflow,
            "schedule_id": schedule_id,
            "fire_at": fire_at,
            "started_by_task": started_by_task,
        },
    )
    row = await cursor.fetchone()
    if row is None and started_by_task is not None:
        cursor = await conn.execute(Q["workflow_run_by_task"], {"task_id": started_by_task})
        existing = await cursor.fetchone()
        if existing is not None:
            return int(existing[0])
    if row is None:
        raise InvalidWorkflow(workflow, "no workflow with this name is stored")
    run_id = int(row[0])
    await advance(conn, run_id)
    return run_id


async def advance(conn: AsyncConn, run_id: int) -> str:
    """Move a run forward (see the module docstring); return its status.

    Set-based: each statement touches the run's steps by index, so a step of a
    1,000-step workflow costs a few small statements, not a reload of the
    graph. Only a failure loads the graph (to find what lies downstream).
    ``conn`` must be inside a transaction.
    """
    cursor = conn.cursor(row_factory=dict_row)
    await cursor.execute(Q["workflow_run_lock"], {"id": run_id}, prepare=True)
    run = await cursor.fetchone()
    if run is None:
        return "missing"
    synced = await (
        await conn.execute(Q["workflow_steps_sync"], {"id": run_id}, prepare=True)
    ).fetchall()
    if run["status"] != "running":
        # A cancelled run's last tasks ending: recorded above, nothing starts.
        return str(run["status"])
    done = [step for step, status in synced if status == "succeeded"]
    if done:
        await conn.execute(Q["workflow_steps_release"], {"id": run_id, "done": done}, prepare=True)
    if any(status in ("failed", "cancelled") for _, status in synced):
        await _on_failure(conn, run_id, run["on_failure"])
        # Step tasks cancelled while still pending ended just now: record them.
        await conn.execute(Q["workflow_steps_sync"], {"id": run_id}, prepare=True)

    await cursor.execute(Q["workflow_run_counts"], {"id": run_id}, prepare=True)
    counts = await cursor.fetchone()
    assert counts is not None
    active, waiting = counts["active"], counts["waiting"]
    stopping = counts["failed"] > 0 and run["on_failure"] == "stop"
    if waiting and not stopping:
        capacity = 1 if run["mode"] == "serial" else (run["max_parallel"] or counts["total"])
        if capacity > active:
            await cursor.execute(
                Q["workflow_steps_ready"], {"id": run_id, "limit": capacity - active}, prepare=True
            )
            ready = await cursor.fetchall()
            if ready:
                await _enqueue(conn, run_id, ready)
                active += len(ready)
                waiting -= len(ready)
    if active == 0 and waiting == 0:
        final = "succeeded" if counts["not_succeeded"] == 0 else "failed"
        await conn.execute(Q["workflow_run_finish"], {"id": run_id, "status": final})
        return final
    return "running"


async def _enqueue(conn: AsyncConn, run_id: int, ready: list[dict[str, Any]]) -> None:
    tasks = [
        LinkedTask(
            EnqueueRequest(
                step["task_type"],
                step["payload"],
                # A step carries its task type's options (stored when it was defined).
                **{k: v for k, v in step["options"].items() if k in TASK_OPTIONS},
            ),
            workflow_run_id=run_id,
            step=step["step"],
            inputs=step["inputs"],
        )
        for step in ready
    ]
    changes = [
        {"step": name, "status": "enqueued", "task_id": task_id}
        for task_id, _, _, name in await TaskQueue.enqueue_linked(conn, tasks)
    ]
    await conn.execute(
        Q["workflow_steps_set"], {"id": run_id, "changes": orjson.dumps(changes).decode()}
    )


async def _cancel_tasks(conn: AsyncConn, run_id: int) -> None:
    """Cancel the run's unfinished step tasks: pending ones at once, running ones
    by request (their handlers are told to stop)."""
    cursor = await conn.execute(Q["workflow_run_unfinished_tasks"], {"id": run_id})
    task_ids = [row[0] for row in await cursor.fetchall()]
    if task_ids:
        await TaskQueue.cancel_many(conn, task_ids, reason="workflow run stopped")


async def _on_failure(conn: AsyncConn, run_id: int, on_failure: str) -> None:
    """A step failed for good: stop the run, or skip what depends on it."""
    cursor = conn.cursor(row_factory=dict_row)
    await cursor.execute(Q["workflow_run_steps"], {"id": run_id})
    steps = await cursor.fetchall()
    changes: list[dict[str, Any]] = []
    if on_failure == "stop":
        changes = [
            {"step": s["step"], "status": "cancelled", "task_id": None}
            for s in steps
            if s["status"] == "waiting"
        ]
        if any(s["status"] == "enqueued" for s in steps):
            await _cancel_tasks(conn, run_id)
    else:
        specs = [StepSpec(s["step"], s["task_type"], tuple(s["after"])) for s in steps]
        failed = {s["step"] for s in steps if s["status"] in ("failed", "cancelled")}
        waiting = {s["step"] for s in steps if s["status"] == "waiting"}
        changes = [
            {"step": name, "status": "skipped", "task_id": None}
            for name in sorted(downstream(specs, failed) & waiting)
        ]
    if changes:
        await conn.execute(
            Q["workflow_steps_set"], {"id": run_id, "changes": orjson.dumps(changes).decode()}
        )


async def cancel_run(conn: AsyncConn, run_id: int) -> str:
    """Cancel a run: waiting steps cancelled, pending tasks cancelled, running
    ones asked to stop; the run ends cancelled. ``conn`` must be in a transaction."""
    cursor = conn.cursor(row_factory=dict_row)
    await cursor.execute(Q["workflow_run_lock"], {"id": run_id})
    run = await cursor.fetchone()
    if run is None or run["status"] != "running":
        return "missing" if run is None else str(run["status"])
    await _cancel_tasks(conn, run_id)
    await cursor.execute(Q["workflow_run_steps"], {"id": run_id})
    changes = [
        {"step": row["step"], "status": "cancelled", "task_id": None}
        for row in await cursor.fetchall()
        if row["status"] == "waiting"
        or (row["status"] == "enqueued" and row["task_status"] == "cancelled")
    ]
    if changes:
        await conn.execute(
            Q["workflow_steps_set"], {"id": run_id, "changes": orjson.dumps(changes).decode()}
        )
    await conn.execute(Q["workflow_run_finish"], {"id": run_id, "status": "cancelled"})
    return "cancelled"


async def reconcile(conn: AsyncConn, limit: int = 100) -> int:
    """Advance runs whose step tasks ended outside a worker's report; return how many."""
    cursor = await conn.execute(Q["workflow_runs_stale"], {"limit": limit})
    run_ids = [row[0] for row in await cursor.fetchall()]
    for run_id in sorted(run_ids):
        async with conn.transaction():
            await advance(conn, run_id)
    return len(run_ids)
