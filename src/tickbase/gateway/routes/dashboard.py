"""HTTP ``/api/v1/dashboard``: what the dashboard's pages read beyond the resources."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from tickbase.gateway.dashboard_schemas import OverviewOut, TaskEventOut
from tickbase.gateway.feed import DashboardFeed
from tickbase.gateway.routes.deps import ERRORS, Gw, Reader, TaskId

router = APIRouter(prefix="/api/v1", responses=ERRORS)


@router.get("/dashboard/overview", response_model=OverviewOut, tags=["dashboard"])
async def overview(request: Request, _: Reader) -> Any:
    """The cluster's figures and tasks finished per minute over the last hour.

    Computed at most once every two seconds per gateway process, however many
    dashboards ask (the same figures the ``stats`` channel pushes)."""
    feed: DashboardFeed = request.app.state.feed
    return await feed.overview()


@router.get("/tasks/{task_id}/events", response_model=list[TaskEventOut], tags=["tasks"])
async def task_events(task_id: TaskId, gw: Gw, _: Reader) -> Any:
    """A task's lifecycle, oldest first: enqueued, started, retrying, ... (404: no such task)."""
    await gw.app.queue.get(task_id)
    return [
        {"at": e.at, "event": e.event, "node_id": e.node_id, "detail": e.detail}
        for e in await gw.app.queue.events(task_id)
    ]
