"""HTTP ``/api/v1/requests``: the state of a request sent with a ``requestId``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from tickbase.gateway.routes.deps import ERRORS, Gw, Reader
from tickbase.gateway.schemas import REQUEST_ID_PATTERN, RequestState

router = APIRouter(prefix="/api/v1", responses=ERRORS)


@router.get("/requests/{request_id}", response_model=RequestState, tags=["requests"])
async def get_request(
    request_id: Annotated[str, Path(pattern=REQUEST_ID_PATTERN)], gw: Gw, principal: Reader
) -> Any:
    """The polling fallback of the WebSocket: the state it would have sent."""
    return await gw.service.request_state(principal, request_id)
