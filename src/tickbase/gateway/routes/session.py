"""HTTP ``/api/v1/auth/session``: a signed session in exchange for a token."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter

from tickbase.gateway.auth import SESSION_TTL_DEFAULT
from tickbase.gateway.errors import ApiError
from tickbase.gateway.routes.deps import ERRORS, Gw, Reader
from tickbase.gateway.schemas import SessionOut

router = APIRouter(prefix="/api/v1", responses=ERRORS)


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
