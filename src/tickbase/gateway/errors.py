"""One error shape for the whole gateway: ``{"error": {"code", "message", "details"}}``.

Errors raised anywhere below (a refused enqueue, an unknown schedule, a
missing token) become the right HTTP status and a stable ``code`` here, and
nowhere else; WebSocket ``error`` frames use the same codes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from tickbase.errors import (
    ConfigurationError,
    DatabaseError,
    InvalidAlert,
    InvalidCredentials,
    InvalidSchedule,
    InvalidTask,
    InvalidTransition,
    InvalidWorkflow,
    PayloadTooLarge,
    ScheduleNotFound,
    TaskFailed,
    TaskNotFound,
    TickbaseError,
    UnknownTaskType,
    WorkflowRunNotFound,
)
from tickbase.gateway.routing import allowed_methods

logger = logging.getLogger("tickbase.gateway")

RETRY_AFTER_SECONDS = 1


class ApiError(Exception):
    """An error the gateway answers with: HTTP status, stable code, message, details."""

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


_BY_TYPE: list[tuple[type[Exception], int, str]] = [
    (InvalidCredentials, 401, "UNAUTHORIZED"),
    (TaskNotFound, 404, "NOT_FOUND"),
    (ScheduleNotFound, 404, "NOT_FOUND"),
    (WorkflowRunNotFound, 404, "NOT_FOUND"),
    (UnknownTaskType, 422, "UNKNOWN_TASK_TYPE"),
    (InvalidTransition, 409, "CONFLICT"),
    (PayloadTooLarge, 413, "PAYLOAD_TOO_LARGE"),
    (InvalidTask, 422, "INVALID_TASK"),
    (InvalidSchedule, 422, "INVALID_SCHEDULE"),
    (InvalidWorkflow, 422, "INVALID_WORKFLOW"),
    (InvalidAlert, 422, "INVALID_ALERT"),
    (ConfigurationError, 422, "INVALID_INPUT"),
    (TaskFailed, 409, "TASK_FAILED"),
]


def api_error(exc: Exception) -> ApiError:
    """The ApiError for any exception (tickbase errors mapped; others are internal)."""
    if isinstance(exc, ApiError):
        return exc
    for kind, status, code in _BY_TYPE:
        if isinstance(exc, kind):
            return ApiError(status, code, str(exc))
    if isinstance(exc, DatabaseError | psycopg.OperationalError | psycopg.InterfaceError):
        # A lost connection, an exhausted pool (PoolTimeout), a terminated
        # backend: nothing the client did, and retrying soon may well work.
        return ApiError(503, "UNAVAILABLE", "the database is unavailable: retry shortly")
    if isinstance(exc, TickbaseError):
        return ApiError(400, "BAD_REQUEST", str(exc))
    if isinstance(exc, psycopg.DataError):
        # A value the database cannot hold that no check before it caught.
        return ApiError(422, "INVALID_INPUT", f"invalid value: {exc.diag.message_primary}")
    return ApiError(500, "INTERNAL", "internal error (logged on the server)")


def validation_details(errors: Any) -> list[dict[str, Any]]:
    """pydantic errors as ``{"path": "body.params.taskType", "message": ...}``."""
    details = []
    for error in errors:
        location = [str(part) for part in error.get("loc", ())]
        details.append({"path": ".".join(location), "message": error.get("msg", "invalid")})
    return details


def respond(error: ApiError, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """The HTTP response of an error (401s name the scheme to use; 503s when to retry)."""
    merged = dict(headers or {})
    if error.status == 401:
        merged["WWW-Authenticate"] = "Bearer"
    elif error.status == 503:
        merged["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return JSONResponse(error.body(), status_code=error.status, headers=merged or None)


def install_error_handlers(app: FastAPI) -> None:
    """Route every error through the one shape."""

    @app.exception_handler(ApiError)
    async def on_api_error(_: Request, exc: ApiError) -> JSONResponse:
        return respond(exc)

    @app.exception_handler(RequestValidationError)
    async def on_validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return respond(
            ApiError(
                422,
                "VALIDATION_ERROR",
                "request validation failed",
                validation_details(exc.errors()),
            )
        )

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 401: "UNAUTHORIZED"}
        error = ApiError(exc.status_code, codes.get(exc.status_code, "HTTP_ERROR"), str(exc.detail))
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            methods = allowed_methods(request.app.router.routes, request.scope)
            if methods:
                headers["Allow"] = ", ".join(methods)
        return respond(error, headers)

    @app.exception_handler(TickbaseError)
    async def on_tickbase(request: Request, exc: TickbaseError) -> JSONResponse:
        error = api_error(exc)
        if error.status == 503:
            logger.warning(
                "database unavailable on %s %s: %s", request.method, request.url.path, exc
            )
        return respond(error)

    # Anything else (psycopg's errors among them) is answered, and logged once,
    # by the request guard: an exception handler for Exception would log here
    # and Starlette would re-raise it for uvicorn to log a second time.
