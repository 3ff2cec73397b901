"""HTTP ``/api/v1``: the cluster's nodes, stats and alerts."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from tickbase.cluster.alerts import AlertStore
from tickbase.cluster.lease import lease_holder
from tickbase.cluster.nodes import list_nodes
from tickbase.gateway.admin_schemas import LeaderOut
from tickbase.gateway.routes.deps import ERRORS, CursorParam, Gw, Limit, Reader, parse_cursor
from tickbase.gateway.schemas import AlertPage, NodeOut, StatsOut

router = APIRouter(prefix="/api/v1", responses=ERRORS)


@router.get("/nodes", response_model=list[NodeOut], tags=["cluster"])
async def nodes(gw: Gw, _: Reader) -> Any:
    async with gw.app.pool.connection() as conn:
        return await list_nodes(conn)


@router.get("/cluster/leader", response_model=LeaderOut, tags=["cluster"])
async def leader(gw: Gw, _: Reader) -> Any:
    """The ``leader`` lease: its holder and fencing token (``live`` False once it
    has expired; every field empty when no node ever led)."""
    async with gw.app.pool.connection() as conn:
        found = await lease_holder(conn)
    return found or {}


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
        state=state, limit=limit, before_id=parse_cursor(cursor)
    )
    next_cursor = str(found[-1].id) if len(found) == limit else None
    return {"items": [a.to_dict() for a in found], "next_cursor": next_cursor}
