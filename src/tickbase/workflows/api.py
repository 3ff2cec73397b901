"""The Python front end of workflows: define, validate, store, run, wait.

Example::

    wf = app.workflow("eod", mode="parallel", on_failure="continue", max_parallel=4)
    wf.step("bars", fetch_bars).step("ind", compute, after=["bars"])
    run = await wf.run()
    await run.wait(timeout=60)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from tickbase.db.errors import domain_errors
from tickbase.db.pool import AsyncConn
from tickbase.errors import InvalidWorkflow, ResultTimeout, WorkflowRunNotFound
from tickbase.workflows.dag import StepSpec, validate
from tickbase.workflows.engine import Q, cancel_run, start_run

RUN_FINAL = ("succeeded", "failed", "cancelled")
WAIT_POLL_FIRST_SECONDS = 0.005
WAIT_POLL_SECONDS = 0.2


@dataclass(frozen=True)
class StepState:
    """One step of a run, as it stands."""

    name: str
    status: str
    task_id: int | None
    task_status: str | None
    result: Any
    attempts: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    task_type: str | None = None
    after: tuple[str, ...] = ()
    """The steps this one runs after (the DAG's edges)."""

    @property
    def duration(self) -> float | None:
        """Seconds the step's (last) attempt ran, once it has finished."""
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


class Workflow:
    """A workflow definition being built in code; nothing is stored until ``run()``/``save()``."""

    def __init__(
        self,
        pool_source: Callable[[], AsyncConnectionPool[AsyncConn]],
        known_task_types: Callable[[], Collection[str]],
        task_options: Callable[[str], dict[str, Any]],
        name: str,
        *,
        mode: str = "serial",
        on_failure: str = "stop",
        max_parallel: int | None = None,
    ) -> None:
        self._pool_source = pool_source
        self._known = known_task_types
        self._options = task_options
        self.name = name
        self.mode = mode
        self.on_failure = on_failure
        self.max_parallel = max_parallel
        self.steps: list[StepSpec] = []

    def step(
        self,
        name: str,
        task: Any,
        *,
        after: Sequence[str] = (),
        payload: dict[str, Any] | None = None,
    ) -> Workflow:
        """Add a step running ``task`` (a task function or a task type name); chainable."""
        task_type = task if isinstance(task, str) else getattr(task, "name", None)
        if not isinstance(task_type, str):
            raise InvalidWorkflow(
                self.name, f"step {name!r}: task must be a task function or a task type name"
            )
        self.steps.append(
            StepSpec(name, task_type, tuple(after), dict(payload or {}), self._options(task_type))
        )
        return self

    def validate(self) -> list[StepSpec]:
        """Raise :class:`InvalidWorkflow` naming the problem; return the run order."""
        return validate(
            self.name,
            self.steps,
            mode=self.mode,
            on_failure=self.on_failure,
            max_parallel=self.max_parallel,
            known_task_types=self._known(),
        )

    async def save(self) -> int:
        """Validate, then store the definition (replacing one of the same name)."""
        ordered = self.validate()
        async with self._pool_source().connection() as conn:
            values = {"workflow": self.name, "mode": self.mode, "on_failure": self.on_failure}
            with domain_errors({**values, "max_parallel": self.max_parallel}):
                cursor = await conn.execute(
                    Q["workflow_upsert"],
                    {
                        "name": self.name,
                        "mode": self.mode,
                        "on_failure": self.on_failure,
                        "max_parallel": self.max_parallel,
                        "steps": orjson.dumps([s.to_dict() for s in ordered]).decode(),
                    },
                )
            row = await cursor.fetchone()
        assert row is not None
        return int(row[0])

    async def run(self) -> WorkflowRun:
        """Store the definition and start a run; its first steps are enqueued at once."""
        await self.save()
        return await WorkflowRuns(self._pool_source()).start(self.name)


class WorkflowRun:
    """A run of a workflow; ``status`` and ``steps`` are as of the last refresh."""

    def __init__(self, pool: AsyncConnectionPool[AsyncConn], run_id: int) -> None:
        self.pool = pool
        self.id = run_id
        self.status = "running"
        self.steps: dict[str, StepState] = {}
        self.created_at: datetime | None = None
        self.finished_at: datetime | None = None
        self.workflow: str | None = None
        self.mode: str | None = None
        self.on_failure: str | None = None
        self.max_parallel: int | None = None

    async def refresh(self) -> WorkflowRun:
        """Read the run and its steps again."""
        async with self.pool.connection() as conn:
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(Q["workflow_run_get"], {"id": self.id})
            run = await cursor.fetchone()
            if run is None:
                raise WorkflowRunNotFound(self.id)
            await cursor.execute(Q["workflow_run_steps"], {"id": self.id})
            rows = await cursor.fetchall()
        self.status = run["status"]
        self.workflow = run["workflow_name"]
        self.mode, self.on_failure = run["mode"], run["on_failure"]
        self.max_parallel = run["max_parallel"]
        self.created_at, self.finished_at = run["created_at"], run["finished_at"]
        self.steps = {
            row["step"]: StepState(
                row["step"],
                row["status"],
                row["task_id"],
                row["task_status"],
                row["result"],
                row["attempts"],
                row["started_at"],
                row["finished_at"],
                row["task_type"],
                tuple(row["after"] or ()),
            )
            for row in rows
        }
        return self

    async def wait(self, timeout: float | None = None) -> str:
        """Wait for the run to end; return its final status."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        pause = WAIT_POLL_FIRST_SECONDS
        while True:
            await self.refresh()
            if self.status in RUN_FINAL:
                return self.status
            if deadline is not None and loop.time() >= deadline:
                raise ResultTimeout(self.id, timeout or 0.0, self.status, what="workflow run")
            await asyncio.sleep(pause)
            # Short runs are seen ending at once; long ones are not polled hard.
            pause = min(pause * 2, WAIT_POLL_SECONDS)

    async def cancel(self) -> str:
        """Cancel the run (pending steps cancelled, running ones asked to stop)."""
        async with self.pool.connection() as conn, conn.transaction():
            status = await cancel_run(conn, self.id)
        await self.refresh()
        return status


class WorkflowRuns:
    """Stored workflows and their runs."""

    def __init__(self, pool: AsyncConnectionPool[AsyncConn]) -> None:
        self.pool = pool

    async def start(
        self,
        name: str,
        *,
        schedule_id: int | None = None,
        fire_at: datetime | None = None,
        started_by_task: int | None = None,
    ) -> WorkflowRun:
        """Start a run of the stored workflow ``name`` (once per ``started_by_task``)."""
        async with self.pool.connection() as conn, conn.transaction():
            run_id = await start_run(
                conn,
                name,
                schedule_id=schedule_id,
                fire_at=fire_at,
                started_by_task=started_by_task,
            )
        return await WorkflowRun(self.pool, run_id).refresh()

    async def get(self, run_id: int) -> WorkflowRun:
        return await WorkflowRun(self.pool, run_id).refresh()

    async def get_workflow(self, name: str) -> dict[str, Any] | None:
        """A stored definition, or ``None``."""
        async with self.pool.connection() as conn:
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(Q["workflow_get"], {"name": name})
            return await cursor.fetchone()

    async def delete_workflow(self, name: str) -> bool:
        """Remove a stored definition (its runs stay); ``False`` when there was none."""
        async with self.pool.connection() as conn:
            cursor = await conn.execute(Q["workflow_delete"], {"name": name})
            return await cursor.fetchone() is not None

    async def list_workflows(self) -> list[dict[str, Any]]:
        async with self.pool.connection() as conn:
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(Q["workflow_list"])
            return list(await cursor.fetchall())

    async def list_runs(
        self,
        name: str | None = None,
        limit: int = 50,
        before_id: int | None = None,
        status: str | None = None,
    ) -> list[dict[str, Any]]:
        """Runs newest first (of workflow ``name``, in ``status``); page with ``before_id``."""
        async with self.pool.connection() as conn:
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(
                Q["workflow_runs_list"],
                {"name": name, "status": status, "limit": limit, "before_id": before_id},
            )
            return list(await cursor.fetchall())
