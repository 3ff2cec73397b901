"""HTTP ``/api/v1/schedules``: stored schedules, their state, fires and history."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from tickbase.errors import InvalidSchedule
from tickbase.gateway.errors import ApiError
from tickbase.gateway.routes.deps import (
    ERRORS,
    NAME,
    Admin,
    Gw,
    Limit,
    Reader,
    bad_cursor,
)
from tickbase.gateway.schemas import (
    ExecutionPage,
    ScheduleCreate,
    ScheduleOut,
    SchedulePreviewIn,
    SchedulePreviewOut,
    ScheduleStats,
    ScheduleUpdate,
    TriggerIn,
    TriggerOut,
)
from tickbase.scheduler.models import ScheduleSpec, upcoming_fires

ScheduleName = Annotated[str, Path(pattern=NAME)]
TimeCursor = Annotated[str | None, Query(max_length=64, description="nextCursor of the last page")]

router = APIRouter(prefix="/api/v1", responses=ERRORS)


@router.get("/schedules", response_model=list[ScheduleOut], tags=["schedules"])
async def list_schedules(
    gw: Gw,
    _: Reader,
    after: Annotated[str | None, Query(max_length=200, pattern=r"^[^\x00]+$")] = None,
    q: Annotated[str | None, Query(max_length=200, pattern=r"^[^\x00]+$")] = None,
    task_type: Annotated[str | None, Query(alias="taskType", pattern=r"^[^\x00]{1,200}$")] = None,
    limit: Annotated[int | None, Query(ge=1, le=1000)] = None,
) -> Any:
    """Schedules by name. With ``limit``, a page: pass the last name as ``after``
    for the next; ``q`` keeps names containing it (any case), ``taskType`` one type."""
    found = await gw.app.schedules.list_schedules(
        after=after, name_contains=q, task_type=task_type, limit=limit
    )
    return [s.to_dict() for s in found]


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


@router.post("/schedules/preview", response_model=SchedulePreviewOut, tags=["schedules"])
async def preview_schedule(body: SchedulePreviewIn, _: Reader) -> Any:
    """The next five fires of a cron expression or an interval in a time zone, as
    the scheduler would compute them for a schedule created now (a read: nothing
    is stored). A refused expression, interval or zone is a 422 naming the field
    (``details.field``: cron, interval or timezone) and what is wrong."""
    if (body.cron is None) == (body.interval_seconds is None):
        raise ApiError(
            422,
            "INVALID_SCHEDULE",
            "give either a cron expression (cron) or an interval (intervalSeconds)",
            {"field": "schedule"},
        )
    try:
        spec = ScheduleSpec.build(
            "preview",
            "preview",
            cron=body.cron,
            every=body.interval_seconds,
            timezone=body.timezone,
        )
    except InvalidSchedule as exc:
        raise ApiError(422, "INVALID_SCHEDULE", str(exc), {"field": exc.field}) from None
    fires = upcoming_fires(spec, datetime.now(UTC))
    return {"kind": spec.kind, "timezone": spec.timezone, "fires": fires}


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
            raise bad_cursor(cursor) from None
        if before.tzinfo is None:
            raise bad_cursor(cursor)
    rows = await gw.app.schedules.executions(name, limit=limit, before=before)
    next_cursor = rows[-1]["fire_at"].isoformat() if len(rows) == limit else None
    return {"items": rows, "next_cursor": next_cursor}


@router.get("/schedules/{name}/stats", response_model=ScheduleStats, tags=["schedules"])
async def schedule_stats(name: ScheduleName, gw: Gw, _: Reader) -> Any:
    """Counts by status, average and p95 duration, last and next fire."""
    return await gw.app.schedules.stats(name)
