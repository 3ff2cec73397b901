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

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from psycopg.rows import dict_row

from tickbase.db.pool import AsyncConn
from tickbase.db.sqlfile import load_queries
from tickbase.errors import InvalidWorkflow
from tickbase.workflows.dag import StepSpec, downstream

Q = load_queries("tickbase.workflows")

FINAL_TASK = ("succeeded", "failed", "cancelled")


@dataclass
class _Step:
    name: str
    position: int
    task_type: str
    payload: dict[str, Any]
    options: dict[str, Any]
    after: list[str]
    status: str
    task_id: int | None
    task_status: str | None
    result: Any


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

    ``conn`` must be inside a transaction.
    """
    cursor = conn.cursor(row_factory=dict_row)
    await cursor.execute(Q["workflow_run_lock"], {"id": run_id})
    run = await cursor.fetchone()
    if run is None:
        return "missing"
    await cursor.execute(Q["workflow_run_steps"], {"id": run_id})
    steps = [
        _Step(
            name=row["step"],
            position=row["position"],
            task_type=row["task_type"],
            payload=row["payload"],
            options=row["options"],
            after=list(row["after"]),
            status=row["status"],
            task_id=row["task_id"],
            task_status=row["task_status"],
            result=row["result"],
        )
        for row in await cursor.fetchall()
    ]
    by_name = {step.name: step for step in steps}
    changed: dict[str, _Step] = {}

    for step in steps:
        if step.status == "enqueued" and step.task_status in FINAL_TASK:
            step.status = str(step.task_status)
            changed[step.name] = step
    if run["status"] != "running":
        # A cancelled run's last tasks ending: record them, start nothing.
        await _save(conn, run_id, changed)
        return str(run["status"])

    failed = {step.name for step in steps if step.status in ("failed", "cancelled")}
    stopping = bool(failed) and run["on_failure"] == "stop"
    if stopping:
        for step in steps:
            if step.status == "waiting":
                step.status = "cancelled"
                changed[step.name] = step
        if any(step.status == "enqueued" for step in steps):
            await conn.execute(Q["workflow_run_cancel_tasks"], {"id": run_id})
    elif failed:
        specs = [StepSpec(s.name, s.task_type, tuple(s.after)) for s in steps]
        for name in downstream(specs, failed):
            step = by_name[name]
            if step.status == "waiting":
                step.status = "skipped"
                changed[name] = step

    if not stopping:
        active = sum(1 for step in steps if step.status == "enqueued")
        capacity = 1 if run["mode"] == "serial" else (run["max_parallel"] or len(steps))
        ready = [
            step
            for step in steps
            if step.status == "waiting"
            and all(by_name[dep].status == "succeeded" for dep in step.after)
        ][: max(capacity - active, 0)]
        if ready:
            rows = [
                {
                    "run_id": run_id,
                    "step": step.name,
                    "task_type": step.task_type,
                    "payload": step.payload,
                    "options": step.options,
                    "inputs": {dep: by_name[dep].result for dep in step.after},
                }
                for step in ready
            ]
            cursor2 = await conn.execute(
                Q["workflow_steps_enqueue"], {"steps": orjson.dumps(rows).decode()}
            )
            ids = {name: task_id for task_id, name in await cursor2.fetchall()}
            for step in ready:
                step.status = "enqueued"
                step.task_id = ids[step.name]
                changed[step.name] = step

    await _save(conn, run_id, changed)
    if all(step.status not in ("waiting", "enqueued") for step in steps):
        final = "succeeded" if all(step.status == "succeeded" for step in steps) else "failed"
        await conn.execute(Q["workflow_run_finish"], {"id": run_id, "status": final})
        return final
    return "running"


async def _save(conn: AsyncConn, run_id: int, changed: dict[str, _Step]) -> None:
    if changed:
        rows = [
            {"step": s.name, "status": s.status, "task_id": s.task_id} for s in changed.values()
        ]
        await conn.execute(
            Q["workflow_steps_set"], {"id": run_id, "changes": orjson.dumps(rows).decode()}
        )


async def cancel_run(conn: AsyncConn, run_id: int) -> str:
    """Cancel a run: waiting steps cancelled, pending tasks cancelled, running
    ones asked to stop; the run ends cancelled. ``conn`` must be in a transaction."""
    cursor = conn.cursor(row_factory=dict_row)
    await cursor.execute(Q["workflow_run_lock"], {"id": run_id})
    run = await cursor.fetchone()
    if run is None or run["status"] != "running":
        return "missing" if run is None else str(run["status"])
    await conn.execute(Q["workflow_run_cancel_tasks"], {"id": run_id})
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
