"""The maintenance tasks every app defines, and their builtin schedules.

``tickbase.prune`` deletes old finished tasks, ``tickbase.health`` records a
database round trip, ``tickbase.workflow`` starts a stored workflow's run
(the target of a schedule that fires a workflow).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from tickbase.worker.context import TaskContext

if TYPE_CHECKING:
    # Only for annotations: the app module imports this one.
    from tickbase.app import App

PRUNE_RETENTION_DAYS = 7.0
PRUNE_EVERY_SECONDS = 3600.0
HEALTH_EVERY_SECONDS = 60.0
WORKFLOW_TASK = "tickbase.workflow"


def register_maintenance(app: App) -> None:
    """Define the maintenance tasks on ``app`` and schedule prune and health."""

    @app.task(name="tickbase.prune")
    async def prune(
        retention_days: float = PRUNE_RETENTION_DAYS, batch_size: int = 1000
    ) -> dict[str, Any]:
        """Delete finished tasks older than the retention, in bounded batches."""
        removed = await app.queue.prune(older_than_days=retention_days, batch_size=batch_size)
        return {"removed": removed, "retention_days": retention_days}

    @app.task(name="tickbase.health")
    async def health() -> dict[str, Any]:
        """Database round trip and queue backlog, kept as this task's result."""
        started = time.perf_counter()
        unfinished = await app.queue.count_unfinished()
        return {
            "database_ms": round((time.perf_counter() - started) * 1000, 3),
            "unfinished_tasks": unfinished,
            "node": app.node_id,
        }

    @app.task(name=WORKFLOW_TASK)
    async def run_workflow(workflow: str, context: TaskContext) -> dict[str, Any]:
        """Start a run of a stored workflow (the target of a schedule's fires).

        Once per task: a retry of this task finds the run it started.
        """
        task = await app.queue.get(context.task_id)
        run = await app.workflows.start(
            workflow,
            schedule_id=task.schedule_id,
            fire_at=task.fire_at,
            started_by_task=task.id,
        )
        return {"workflow": workflow, "workflow_run_id": run.id}

    app.schedule(
        "tickbase.prune",
        prune,
        every=PRUNE_EVERY_SECONDS,
        origin="builtin",
        kwargs={"retention_days": PRUNE_RETENTION_DAYS},
        description="Delete finished tasks older than the retention",
    )
    app.schedule(
        "tickbase.health",
        health,
        every=HEALTH_EVERY_SECONDS,
        origin="builtin",
        description="Database round trip and backlog",
    )
