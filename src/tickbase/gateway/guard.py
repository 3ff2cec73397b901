"""The gateway's front door: who is asking, how much they send, and one error path.

:class:`RequestGuard` is a plain ASGI middleware in front of every HTTP route.
In order, before any route or body parser runs:

1. **Authentication** (every path but the public ones: health, readiness,
   the OpenAPI document and its viewers, the dashboard's shell and assets). A refused request gets 401 in the
   error shape; its body is never read (the connection closes after the
   answer when a body was announced).
2. **Body size**: a ``Content-Length`` over :attr:`ServerLimits.max_body_bytes`
   gets 413 at once; a chunked body is read until it passes the limit, then
   refused the same way. A body not complete within
   :attr:`ServerLimits.body_timeout` gets 408. A body within bounds is read
   here and handed to the route from memory.
3. ``OPTIONS`` is answered 204 with ``Allow`` listing every method the path
   has (also the ``Allow`` of a 405).
4. **Errors**: anything a route raises that the exception handlers did not
   answer is answered here, once: database unavailability (a lost connection,
   an exhausted pool, a terminated backend) is 503 with ``Retry-After`` and
   one warning line; anything else is 500 with one logged traceback.

The principal found in step 1 is kept in the request scope; routes read it
through :func:`request_principal` and never authenticate a second time.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.datastructures import Headers, QueryParams
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tickbase.dashboard import is_dashboard_path
from tickbase.errors import InvalidCredentials
from tickbase.gateway.auth import Principal, authenticate, parse_bearer
from tickbase.gateway.errors import ApiError, api_error, respond
from tickbase.gateway.routing import allowed_methods
from tickbase.gateway.server import ServerLimits

logger = logging.getLogger("tickbase.gateway")

PRINCIPAL_KEY = "tickbase.principal"
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/openapi.json", "/docs", "/redoc"})
# The documentation pages' assets (see tickbase.gateway.docs): public, like the pages.
PUBLIC_PREFIXES = ("/docs-assets/",)


class _BodyRefused(Exception):
    def __init__(self, error: ApiError) -> None:
        self.error = error


class _ClientGone(Exception):
    pass


def is_public(path: str) -> bool:
    """Whether ``path`` is served without credentials (health, OpenAPI, its pages,
    the dashboard's shell and assets: none of them holds data)."""
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES) or is_dashboard_path(path)


def request_principal(scope: Scope) -> Principal:
    """The principal the guard authenticated for this request."""
    principal = scope.get(PRINCIPAL_KEY)
    if not isinstance(principal, Principal):
        raise InvalidCredentials(
            "missing credentials: send 'Authorization: Bearer <token>' or '?session=<session>'"
        )
    return principal


class RequestGuard:
    """Authenticate, bound the body, answer OPTIONS and unexpected errors (see the module)."""

    def __init__(self, app: ASGIApp, limits: ServerLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self._guard(scope, receive, tracked)
        except _ClientGone:
            return
        except Exception as exc:
            error = api_error(exc)
            where = f"{scope.get('method')} {scope.get('path')}"
            if error.status == 503:
                logger.warning("database unavailable on %s: %s", where, _one_line(exc))
            else:
                logger.exception("unhandled error on %s", where)
            if not started:
                await respond(error)(scope, receive, send)

    async def _guard(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = Headers(scope=scope)
        length_header = headers.get("content-length")
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        try:
            length = int(length_header) if length_header is not None else None
        except ValueError:
            length = -1
        if length is not None and length < 0:
            await _reply(
                scope, receive, send, ApiError(400, "BAD_REQUEST", "invalid Content-Length")
            )
            return
        has_body = chunked or bool(length)
        if not is_public(scope["path"]):
            try:
                scope[PRINCIPAL_KEY] = await self._authenticate(scope, headers)
            except InvalidCredentials as exc:
                await _reply(
                    scope, receive, send, ApiError(401, "UNAUTHORIZED", str(exc)), close=has_body
                )
                return
        if length is not None and length > self.limits.max_body_bytes:
            await _reply(scope, receive, send, self._too_large(), close=True)
            return
        if scope["method"] == "OPTIONS":
            await self._options(scope, receive, send, close=has_body)
            return
        if has_body:
            try:
                body = await self._read_body(receive)
            except _BodyRefused as refused:
                await _reply(scope, receive, send, refused.error, close=True)
                return
            receive = _replay(body, receive)
        await self.app(scope, receive, send)

    async def _authenticate(self, scope: Scope, headers: Headers) -> Principal:
        gateway = getattr(scope["app"].state, "gateway", None)
        if gateway is None:
            raise ApiError(503, "UNAVAILABLE", "the gateway is starting")
        return await authenticate(
            gateway.tokens,
            gateway.signer,
            bearer=parse_bearer(headers.get("authorization")),
            session=QueryParams(scope.get("query_string", b"")).get("session"),
        )

    def _too_large(self) -> ApiError:
        limit = self.limits.max_body_bytes
        return ApiError(
            413,
            "BODY_TOO_LARGE",
            f"request body over {limit} bytes (TICKBASE_MAX_BODY_BYTES)",
            {"maxBodyBytes": limit},
        )

    async def _read_body(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.limits.body_timeout):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        raise _ClientGone
                    chunk: bytes = message.get("body", b"")
                    size += len(chunk)
                    if size > self.limits.max_body_bytes:
                        raise _BodyRefused(self._too_large())
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        return b"".join(chunks)
        except TimeoutError:
            raise _BodyRefused(
                ApiError(
                    408,
                    "TIMEOUT",
                    f"request body not received within {self.limits.body_timeout:g} s",
                )
            ) from None

    async def _options(self, scope: Scope, receive: Receive, send: Send, *, close: bool) -> None:
        methods = allowed_methods(scope["app"].router.routes, scope)
        if methods is None:
            await _reply(scope, receive, send, ApiError(404, "NOT_FOUND", "Not Found"), close=close)
            return
        headers = [(b"allow", ", ".join(methods).encode("ascii")), (b"content-length", b"0")]
        if close:
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})


async def _reply(
    scope: Scope, receive: Receive, send: Send, error: ApiError, *, close: bool = False
) -> None:
    """Answer with ``error``; ``close``: the body was not read, so the connection ends."""
    await respond(error, {"Connection": "close"} if close else None)(scope, receive, send)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that yields the body already read, then whatever comes next (a disconnect)."""
    pending = True

    async def replayed() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


__all__ = ["PRINCIPAL_KEY", "RequestGuard", "request_principal"]
