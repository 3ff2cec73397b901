"""HTTP ``/api/v1/tasks``: submit, list, read, cancel and retry tasks."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from tickbase.errors import InvalidTask
from tickbase.gateway.routes.deps import (
    ERRORS,
    Admin,
    CursorParam,
    Gw,
    Limit,
    Reader,
    TaskId,
    parse_cursor,
)
from tickbase.gateway.schemas import TaskDetailOut, TaskOut, TaskPage, TaskSubmit
from tickbase.gateway.service import task_detail
from tickbase.gateway.task_filter_schemas import (
    TaskBulkIn,
    TaskBulkOut,
    TaskBulkRecordPage,
    TaskFilterIn,
)

router = APIRouter(prefix="/api/v1", responses=ERRORS)

# An ISO 8601 date and time (a bare number is not a time here).
ISO_TIME = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})?$"


def _time(name: str, value: str | None) -> datetime | None:
    """A query parameter's time, refused naming the parameter when it is not one."""
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise InvalidTask(name, value, "give an ISO 8601 time, e.g. 2026-12-04T08:00:00Z") from None


@router.post(
    "/tasks",
    status_code=201,
    response_model=TaskOut,
    tags=["tasks"],
    responses={
        200: {
            "model": TaskOut,
            "description": "requestId already used for this request, or dedupeKey held: that task",
        }
    },
)
async def submit_task(body: TaskSubmit, gw: Gw, principal: Admin, response: Response) -> Any:
    """Enqueue a task. With a ``requestId`` the submission is idempotent per user.

    The same ``requestId`` with a different body is a 409. A ``dedupeKey``
    held by an unfinished task answers with that task (200), or, with a
    ``requestId``, a 409.

    The answer is the row the insert returned (nothing is read after the
    commit). When the database is unreachable the answer is 503 with
    ``Retry-After``; only a ``requestId`` makes a retry after an unanswered
    request safe (the connection may have died after the commit).
    """
    if body.request_id is not None:
        submitted = await gw.service.submit(principal, body, body.request_id, action="tasks.submit")
        if not submitted.created:
            response.status_code = 200
        return submitted.task.to_dict()
    task, created = await gw.app.queue.enqueue_returning(await gw.service.enqueue_request(body))
    if not created:
        response.status_code = 200  # the dedupeKey is held: that task
    return task.to_dict()


@router.get("/tasks", response_model=TaskPage, tags=["tasks"])
async def list_tasks(
    gw: Gw,
    _: Reader,
    status: Annotated[str | None, Query(pattern=r"^[a-z]{1,20}$")] = None,
    queue: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")] = None,
    task_type: Annotated[str | None, Query(alias="taskType", pattern=r"^[^\x00]{1,200}$")] = None,
    node_id: Annotated[str | None, Query(alias="nodeId", pattern=r"^[^\x00]{1,200}$")] = None,
    created_after: Annotated[str | None, Query(alias="createdAfter", pattern=ISO_TIME)] = None,
    created_before: Annotated[str | None, Query(alias="createdBefore", pattern=ISO_TIME)] = None,
    where: Annotated[
        list[str] | None,
        Query(
            max_length=500,
            description="JSON condition, repeatable: payload.symbol = BTCUSDT, result.bars = 0",
        ),
    ] = None,
    cursor: Annotated[str | None, Query(max_length=20)] = None,
    limit: Limit = 50,
) -> Any:
    """Tasks newest first; filters combine; ``cursor`` continues a listing."""
    task_filter = TaskFilterIn(
        status=status,
        queue=queue,
        task_type=task_type,
        node_id=node_id,
        created_after=_time("createdAfter", created_after),
        created_before=_time("createdBefore", created_before),
        where=where or [],
    ).to_filter()
    tasks = await gw.app.queue.list_tasks(task_filter, before_id=parse_cursor(cursor), limit=limit)
    next_cursor = str(tasks[-1].id) if len(tasks) == limit else None
    return {"items": [t.to_dict() for t in tasks], "next_cursor": next_cursor}


@router.post("/task-bulk-actions", response_model=TaskBulkOut, tags=["tasks"])
async def bulk_tasks(body: TaskBulkIn, gw: Gw, principal: Admin) -> Any:
    """Cancel or retry every task matching a filter: the dry run (default)
    counts them and answers ``upToId``; the run (``dryRun: false`` with that
    ``upToId``) acts on those tasks and writes an audit row of who did it."""
    result = await gw.app.queue.bulk_action(
        body.filter.to_filter(),
        body.action,
        dry_run=body.dry_run,
        up_to_id=body.up_to_id,
        actor=principal.user,
        actor_token_id=principal.token_id,
    )
    return asdict(result)


@router.get("/task-bulk-actions", response_model=TaskBulkRecordPage, tags=["tasks"])
async def bulk_task_actions(
    gw: Gw, _: Reader, cursor: CursorParam = None, limit: Limit = 50
) -> Any:
    """The audit rows of bulk actions, newest first."""
    found = await gw.app.queue.bulk_actions(before_id=parse_cursor(cursor), limit=limit)
    next_cursor = str(found[-1].id) if len(found) == limit else None
    return {"items": [asdict(r) for r in found], "next_cursor": next_cursor}


@router.get("/tasks/{task_id}", response_model=TaskDetailOut, tags=["tasks"])
async def get_task(task_id: TaskId, gw: Gw, _: Reader) -> Any:
    """One task; ``waiting`` says why it is not claimed when no live worker can."""
    return await task_detail(gw.app, task_id)


@router.post("/tasks/{task_id}/cancel", response_model=TaskOut, tags=["tasks"])
async def cancel_task(task_id: TaskId, gw: Gw, _: Admin) -> Any:
    """Cancel: a waiting task at once, a running one through its worker."""
    await gw.app.queue.cancel(task_id, reason="cancelled through the API")
    return (await gw.app.queue.get(task_id)).to_dict()


@router.post("/tasks/{task_id}/retry", status_code=201, response_model=TaskOut, tags=["tasks"])
async def retry_task(task_id: TaskId, gw: Gw, _: Admin) -> Any:
    """Enqueue a copy of a failed or cancelled task (final states never change)."""
    new_id = await gw.app.queue.retry(task_id)
    return (await gw.app.queue.get(new_id)).to_dict()
