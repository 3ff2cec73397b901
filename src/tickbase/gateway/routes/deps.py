"""What every router of the gateway shares: the :class:`Gateway` state, the
principal dependencies (``Reader``, ``Admin``), path and query parameter
types, the error responses and the listing cursors.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Path, Query, Request
from fastapi.security import APIKeyQuery, HTTPAuthorizationCredentials, HTTPBearer

from tickbase.app import App
from tickbase.gateway.auth import Principal, SessionSigner, TokenStore
from tickbase.gateway.errors import ApiError
from tickbase.gateway.guard import request_principal
from tickbase.gateway.schemas import NAME_PATTERN, ErrorResponse
from tickbase.gateway.service import GatewayService

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
    """The :class:`Gateway` of the request's application."""
    found: Gateway = request.app.state.gateway
    return found


async def current_principal(
    request: Request,
    # Declared for the OpenAPI security scheme only: the request guard has
    # already authenticated the request, before its body was read.
    _: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    __: Annotated[str | None, Depends(_session)],
) -> Principal:
    """Who sent the request (any role)."""
    return request_principal(request.scope)


async def require_admin(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
    """Who sent the request, refused with a 403 unless an admin."""
    if not principal.can_write:
        raise ApiError(403, "FORBIDDEN", "this action needs an admin token (viewers read only)")
    return principal


Reader = Annotated[Principal, Depends(current_principal)]
Admin = Annotated[Principal, Depends(require_admin)]
Gw = Annotated[Gateway, Depends(gateway)]
TaskId = Annotated[int, Path(ge=1, le=2**63 - 1)]
Limit = Annotated[int, Query(ge=1, le=1000)]
CursorParam = Annotated[
    str | None, Query(pattern=r"^[1-9][0-9]{0,18}$", description="nextCursor of the last page")
]


def parse_cursor(value: str | None) -> int | None:
    """The id of a ``nextCursor``, or a 422 naming a malformed one."""
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()) or not 0 < int(value) < 2**63:
        raise bad_cursor(value)
    return int(value)


def bad_cursor(value: str) -> ApiError:
    """The 422 of a cursor that is no ``nextCursor``."""
    return ApiError(
        422,
        "VALIDATION_ERROR",
        f"invalid cursor {value!r}",
        [{"path": "query.cursor", "message": "use the nextCursor of the previous page"}],
    )
