"""HTTP ``/api/v1``: tasks, requests, schedules, workflows, nodes, stats, alerts.

Viewers read; only admins create, change, trigger or cancel (``require_admin``
on every mutating route). JSON is camelCase (see ``schemas``); every error has
the one shape of ``errors``. Listings page with an opaque ``cursor`` (the
``nextCursor`` of the previous page).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.security import APIKeyQuery, HTTPAuthorizationCredentials, HTTPBearer

from tickbase.app import App
from tickbase.cluster.alerts import AlertStore
from tickbase.cluster.nodes import list_nodes
from tickbase.gateway.auth import SESSION_TTL_DEFAULT, Principal, SessionSigner, TokenStore
from tickbase.gateway.errors import ApiError
from tickbase.gateway.guard import request_principal
from tickbase.gateway.schemas import (
    NAME_PATTERN,
    REQUEST_ID_PATTERN,
    AlertPage,
    ErrorResponse,
    ExecutionPage,
    NodeOut,
    RequestState,
    RunOut,
    RunPage,
    ScheduleCreate,
    ScheduleOut,
    ScheduleStats,
    ScheduleUpdate,
    SessionOut,
    StatsOut,
    TaskDetailOut,
    TaskOut,
    TaskPage,
    TaskSubmit,
    TriggerIn,
    TriggerOut,
    ValidationOut,
    WorkflowIn,
    WorkflowOut,
    run_out,
)
from tickbase.gateway.service import GatewayService, task_detail
from tickbase.scheduler.models import ScheduleSpec
from tickbase.workflows.api import WorkflowRun

NAME = NAME_PATTERN
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse} for status in (400, 401, 403, 404, 409, 413, 422, 429)
}

_bearer = HTTPBearer(auto_error=False, description="An API token: `tickbase tokens create`.")
_session = APIKeyQuery(
    name="session",
    auto_error=False,
    description="A signed session (POST /api/v1/auth/session), for browsers.",
)


class Gateway:
    """What the routes need, kept on ``app.state.gateway``."""

    def __init__(self, app: App, tokens: TokenStore, signer: SessionSigner) -> None:
        self.app = app
        self.tokens = tokens
        self.signer = signer
        self.service = GatewayService(app)


def gateway(request: Request) -> Gateway:
    found: Gateway = request.app.state.gateway
    return found


async def current_principal(
    request: Request,
    # Declared for the OpenAPI security scheme only: the request guard has
    # already authenticated the request, before its body was read.
    _: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    __: Annotated[str | None, Depends(_session)],
) -> Principal:
    return request_principal(request.scope)


async def require_admin(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
    if not principal.can_write:
        raise ApiError(403, "FORBIDDEN", "this action needs an admin token (viewers read only)")
    return principal


Reader = Annotated[Principal, Depends(current_principal)]
Admin = Annotated[Principal, Depends(require_admin)]
Gw = Annotated[Gateway, Depends(gateway)]
ScheduleName = Annotated[str, Path(pattern=NAME)]
WorkflowName = Annotated[str, Path(pattern=NAME)]
TaskId = Annotated[int, Path(ge=1, le=2**63 - 1)]
Limit = Annotated[int, Query(ge=1, le=1000)]
CursorParam = Annotated[
    str | None, Query(pattern=r"^[1-9][0-9]{0,18}$", description="nextCursor of the last page")
]
TimeCursor = Annotated[str | None, Query(max_length=64, description="nextCursor of the last page")]


def _cursor(value: str | None) -> int | None:
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()) or not 0 < int(value) < 2**63:
        raise _bad_cursor(value)
    return int(value)


def _bad_cursor(value: str) -> ApiError:
    return ApiError(
        422,
        "VALIDATION_ERROR",
        f"invalid cursor {value!r}",
        [{"path": "query.cursor", "message": "use the nextCursor of the previous page"}],
    )


router = APIRouter(prefix="/api/v1", responses=ERRORS)

# ---- tasks ---------------------------------------------------------------------


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
    cursor: Annotated[str | None, Query(max_length=20)] = None,
    limit: Limit = 50,
) -> Any:
    """Tasks newest first; filters combine; ``cursor`` continues a listing."""
    tasks = await gw.app.queue.list_tasks(
        status=status, queue=queue, task_type=task_type, before_id=_cursor(cursor), limit=limit
    )
    next_cursor = str(tasks[-1].id) if len(tasks) == limit else None
    return {"items": [t.to_dict() for t in tasks], "next_cursor": next_cursor}


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


@router.get("/requests/{request_id}", response_model=RequestState, tags=["requests"])
async def get_request(
    request_id: Annotated[str, Path(pattern=REQUEST_ID_PATTERN)], gw: Gw, principal: Reader
) -> Any:
    """The polling fallback of the WebSocket: the state it would have sent."""
    return await gw.service.request_state(principal, request_id)


# ---- schedules -----------------------------------------------------------------


@router.get("/schedules", response_model=list[ScheduleOut], tags=["schedules"])
async def list_schedules(gw: Gw, _: Reader) -> Any:
    return [s.to_dict() for s in await gw.app.schedules.list_schedules()]


@router.post("/schedules", status_code=201, response_model=ScheduleOut, tags=["schedules"])
async def create_schedule(body: ScheduleCreate, gw: Gw, _: Admin) -> Any:
    options = body.model_dump(
        exclude={"name", "task_type", "cron", "interval_seconds", "every_seconds", "manual"}
    )
    spec = ScheduleSpec.build(
        body.name,
        body.task_type,
        cron=body.cron,
        every=body.interval_seconds,
        manual=body.manual,
        **options,
    )
    return (await gw.app.schedules.create(spec)).to_dict()


@router.get("/schedules/{name}", response_model=ScheduleOut, tags=["schedules"])
async def get_schedule(name: ScheduleName, gw: Gw, _: Reader) -> Any:
    return (await gw.app.schedules.get(name)).to_dict()


@router.patch("/schedules/{name}", response_model=ScheduleOut, tags=["schedules"])
async def update_schedule(name: ScheduleName, body: ScheduleUpdate, gw: Gw, _: Admin) -> Any:
    changes = body.model_dump(exclude_unset=True, exclude={"every_seconds"})
    if "interval_seconds" in changes:
        changes["every"] = changes.pop("interval_seconds")
    if not changes:
        raise ApiError(422, "VALIDATION_ERROR", "nothing to change: give at least one field")
    return (await gw.app.schedules.update(name, **changes)).to_dict()


@router.delete("/schedules/{name}", response_model=ScheduleOut, tags=["schedules"])
async def remove_schedule(name: ScheduleName, gw: Gw, _: Admin) -> Any:
    """Remove a schedule (its history is kept)."""
    return (await gw.app.schedules.remove(name)).to_dict()


def _state_route(action: str) -> None:
    async def change(name: ScheduleName, gw: Gw, _: Admin) -> Any:
        return (await getattr(gw.app.schedules, action)(name)).to_dict()

    change.__name__ = f"{action}_schedule"
    change.__doc__ = f"{action.capitalize()} a schedule."
    router.post(f"/schedules/{{name}}/{action}", response_model=ScheduleOut, tags=["schedules"])(
        change
    )


for _action in ("enable", "disable", "pause", "resume"):
    _state_route(_action)


@router.post("/schedules/{name}/trigger", response_model=TriggerOut, tags=["schedules"])
async def trigger_schedule(
    name: ScheduleName, gw: Gw, principal: Admin, body: TriggerIn | None = None
) -> Any:
    """Fire now, by hand (recorded as a manual trigger).

    With a ``requestId`` the fire happens once per id and user, however often
    the request is sent (over HTTP or the WebSocket): a repeat answers with
    the first fire.
    """
    if body is not None and body.request_id is not None:
        fired = await gw.service.trigger(principal, name, body.request_id)
        return {"task_id": fired.task_id, "fire_at": fired.fire_at}
    task_id, fire_at = await gw.app.schedules.trigger(name)
    return {"task_id": task_id, "fire_at": fire_at}


@router.get("/schedules/{name}/executions", response_model=ExecutionPage, tags=["schedules"])
async def schedule_executions(
    name: ScheduleName, gw: Gw, _: Reader, cursor: TimeCursor = None, limit: Limit = 50
) -> Any:
    """The schedule's executions (its tasks), newest fire first."""
    before = None
    if cursor is not None:
        try:
            before = datetime.fromisoformat(cursor)
        except ValueError:
            raise _bad_cursor(cursor) from None
        if before.tzinfo is None:
            raise _bad_cursor(cursor)
    rows = await gw.app.schedules.executions(name, limit=limit, before=before)
    next_cursor = rows[-1]["fire_at"].isoformat() if len(rows) == limit else None
    return {"items": rows, "next_cursor": next_cursor}


@router.get("/schedules/{name}/stats", response_model=ScheduleStats, tags=["schedules"])
async def schedule_stats(name: ScheduleName, gw: Gw, _: Reader) -> Any:
    """Counts by status, average and p95 duration, last and next fire."""
    return await gw.app.schedules.stats(name)


# ---- workflows -----------------------------------------------------------------


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
    cursor: CursorParam = None,
    limit: Limit = 50,
) -> Any:
    """Workflow runs newest first (of one ``workflow``)."""
    rows = await gw.app.workflows.list_runs(workflow, limit=limit, before_id=_cursor(cursor))
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
    from tickbase.errors import InvalidWorkflow

    try:
        return await gw.app.workflows.get(run_id)
    except InvalidWorkflow:
        raise ApiError(404, "NOT_FOUND", f"no workflow run {run_id}") from None


# ---- cluster -------------------------------------------------------------------


@router.get("/nodes", response_model=list[NodeOut], tags=["cluster"])
async def nodes(gw: Gw, _: Reader) -> Any:
    async with gw.app.pool.connection() as conn:
        return await list_nodes(conn)


@router.get("/stats", response_model=StatsOut, tags=["cluster"])
async def stats(request: Request, _: Reader) -> Any:
    """Tasks by queue and status, throughput, backlog, latency, nodes, leader, schedule lag.

    Read at most once a second, over one connection, however often asked.
    """
    from tickbase.cluster.metrics import public_stats
    from tickbase.gateway.figures import ClusterFigures

    figures: ClusterFigures = request.app.state.figures
    return public_stats(await figures.stats())


@router.get("/alerts", response_model=AlertPage, tags=["cluster"])
async def alerts(
    gw: Gw,
    _: Reader,
    state: Annotated[str | None, Query(pattern=r"^(firing|resolved)$")] = None,
    cursor: CursorParam = None,
    limit: Limit = 100,
) -> Any:
    """Alerts newest first (firing, resolved or both)."""
    found = await AlertStore(gw.app.pool).alerts(
        state=state, limit=limit, before_id=_cursor(cursor)
    )
    next_cursor = str(found[-1].id) if len(found) == limit else None
    return {"items": [a.to_dict() for a in found], "next_cursor": next_cursor}


@router.post("/auth/session", response_model=SessionOut, tags=["auth"])
async def create_session(gw: Gw, principal: Reader) -> Any:
    """Exchange a token for a short-lived signed session (for browsers' WebSockets)."""
    if principal.token_id is None:
        raise ApiError(403, "FORBIDDEN", "a session is made from an API token")
    # Renewing from a session keeps its sign-in time: the chain ends at the
    # latest SESSION_MAX_AGE after the token was exchanged.
    session, expires_at = gw.signer.issue_with_expiry(principal, ttl=SESSION_TTL_DEFAULT)
    expires = datetime.fromtimestamp(expires_at, UTC)
    return {"session": session, "expires_at": expires, "role": principal.role}
