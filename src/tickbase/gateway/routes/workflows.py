"""HTTP ``/api/v1/workflows`` and ``/api/v1/runs``: workflow definitions and their runs."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Response

from tickbase.gateway.errors import ApiError
from tickbase.gateway.routes.deps import (
    ERRORS,
    NAME,
    Admin,
    CursorParam,
    Gateway,
    Gw,
    Limit,
    Reader,
    TaskId,
    parse_cursor,
)
from tickbase.gateway.schemas import (
    RunOut,
    RunPage,
    ValidationOut,
    WorkflowIn,
    WorkflowOut,
    run_out,
)
from tickbase.workflows.api import WorkflowRun

WorkflowName = Annotated[str, Path(pattern=NAME)]
RunStatus = Literal["running", "succeeded", "failed", "cancelled"]

router = APIRouter(prefix="/api/v1", responses=ERRORS)


def _workflow(gw: Gateway, body: WorkflowIn) -> Any:
    workflow = gw.app.workflow(
        body.name, mode=body.mode, on_failure=body.on_failure, max_parallel=body.max_parallel
    )
    for step in body.steps:
        workflow.step(step.name, step.task_type, after=step.after, payload=step.payload)
    return workflow


@router.get("/workflows", response_model=list[WorkflowOut], tags=["workflows"])
async def list_workflows(gw: Gw, _: Reader) -> Any:
    return await gw.app.workflows.list_workflows()


@router.post("/workflows", status_code=201, response_model=WorkflowOut, tags=["workflows"])
async def save_workflow(body: WorkflowIn, gw: Gw, _: Admin) -> Any:
    """Create or replace a workflow definition (validated first; nothing stored if bad)."""
    await _workflow(gw, body).save()
    return await gw.app.workflows.get_workflow(body.name)


@router.post("/workflows/validate", response_model=ValidationOut, tags=["workflows"])
async def validate_workflow(body: WorkflowIn, gw: Gw, _: Reader) -> Any:
    """Check a definition without storing it; 422 names the problem."""
    ordered = _workflow(gw, body).validate()
    return {"valid": True, "order": [step.name for step in ordered]}


@router.get("/workflows/{name}", response_model=WorkflowOut, tags=["workflows"])
async def get_workflow(name: WorkflowName, gw: Gw, _: Reader) -> Any:
    found = await gw.app.workflows.get_workflow(name)
    if found is None:
        raise ApiError(404, "NOT_FOUND", f"no workflow named {name!r}")
    return found


@router.delete("/workflows/{name}", status_code=204, tags=["workflows"])
async def delete_workflow(name: WorkflowName, gw: Gw, _: Admin) -> Response:
    """Remove a definition; its runs keep their history."""
    if not await gw.app.workflows.delete_workflow(name):
        raise ApiError(404, "NOT_FOUND", f"no workflow named {name!r}")
    return Response(status_code=204)


@router.post("/workflows/{name}/runs", status_code=201, response_model=RunOut, tags=["workflows"])
async def run_workflow(name: WorkflowName, gw: Gw, _: Admin) -> Any:
    if await gw.app.workflows.get_workflow(name) is None:
        raise ApiError(404, "NOT_FOUND", f"no workflow named {name!r}")
    return run_out(await gw.app.workflows.start(name))


@router.get("/runs", response_model=RunPage, tags=["workflows"])
async def list_runs(
    gw: Gw,
    _: Reader,
    workflow: Annotated[str | None, Query(pattern=NAME)] = None,
    status: RunStatus | None = None,
    cursor: CursorParam = None,
    limit: Limit = 50,
) -> Any:
    """Workflow runs newest first (of one ``workflow``, in one ``status``)."""
    rows = await gw.app.workflows.list_runs(
        workflow, limit=limit, before_id=parse_cursor(cursor), status=status
    )
    next_cursor = str(rows[-1]["id"]) if len(rows) == limit else None
    return {"items": rows, "next_cursor": next_cursor}


@router.get("/runs/{run_id}", response_model=RunOut, tags=["workflows"])
async def get_run(run_id: TaskId, gw: Gw, _: Reader) -> Any:
    return run_out(await _find_run(gw, run_id))


@router.post("/runs/{run_id}/cancel", response_model=RunOut, tags=["workflows"])
async def cancel_run(run_id: TaskId, gw: Gw, _: Admin) -> Any:
    run = await _find_run(gw, run_id)
    await run.cancel()
    return run_out(await run.refresh())


async def _find_run(gw: Gateway, run_id: int) -> WorkflowRun:
    # WorkflowRunNotFound is a 404 (gateway/errors.py).
    return await gw.app.workflows.get(run_id)
