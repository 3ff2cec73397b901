"""The request guard, driven through its ASGI interface (no server, no database).

Proven here: a ``Content-Length`` that is not a non-negative number is 400
before anything else; a protected path before the gateway has started is 503,
and without credentials 401 naming the Bearer scheme, the route never run; a
public path needs no credentials; a body is read once, whole, and handed to
the route as one message (then the client's next message, a disconnect); a
client that leaves mid-body gets no answer and the route never runs; an
error a route raises is answered once (500 without its text, or 503 with
``Retry-After`` and one warning line), and not at all when the route had
already begun its response; ``OPTIONS`` lists the path's methods (404 for an
unknown path) and closes a connection whose body was not read; the
authenticated principal reaches the route through the scope.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import orjson
import psycopg
import pytest
from fastapi import FastAPI, Request
from starlette.types import Message

from tickbase.errors import InvalidCredentials
from tickbase.gateway.auth import Principal, SessionSigner
from tickbase.gateway.guard import RequestGuard, is_public, request_principal
from tickbase.gateway.server import ServerLimits

LIMITS = ServerLimits(max_body_bytes=1024, body_timeout=2.0)
SIGNER = SessionSigner(secrets.token_bytes(32))


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    messages: list[Message] = field(default_factory=list)

    def error(self) -> dict[str, Any]:
        decoded: dict[str, Any] = orjson.loads(self.body)["error"]
        return decoded


@dataclass
class Probe:
    """What the routes of :func:`guarded` saw."""

    bodies: list[bytes] = field(default_factory=list)
    after_body: list[str] = field(default_factory=list)
    users: list[str] = field(default_factory=list)


def guarded(probe: Probe, *, started: bool = True) -> FastAPI:
    """A FastAPI app behind the guard; ``started``: its gateway state is in place."""
    api = FastAPI()
    api.add_middleware(RequestGuard, limits=LIMITS)
    if started:
        # Sessions of principals made in code never consult the token store.
        api.state.gateway = SimpleNamespace(tokens=None, signer=SIGNER)

    @api.get("/healthz")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @api.post("/healthz")
    async def echo(request: Request) -> dict[str, int]:
        probe.bodies.append(await request.body())
        message = await request.receive()
        probe.after_body.append(str(message["type"]))
        return {"size": len(probe.bodies[-1])}

    @api.get("/api/v1/me")
    async def me(request: Request) -> dict[str, str]:
        principal = request_principal(request.scope)
        probe.users.append(principal.user)
        return {"user": principal.user}

    @api.delete("/api/v1/me")
    async def boom() -> None:
        raise RuntimeError("password=hunter2")

    @api.put("/api/v1/me")
    async def lost() -> None:
        raise psycopg.OperationalError("server closed the connection\nunexpectedly")

    return api


async def call(
    app: Callable[..., Awaitable[None]],
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    chunks: list[bytes] | None = None,
    query: str = "",
    disconnect_early: bool = False,
) -> Answer:
    """One HTTP request through ``app``'s ASGI interface; what it answered."""
    incoming: list[Message] = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks or []) - 1}
        for i, chunk in enumerate(chunks or [])
    ]
    if disconnect_early:
        incoming = [*incoming[:1], {"type": "http.disconnect"}]
    sent: list[Message] = []

    async def receive() -> Message:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query.encode(),
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    await app(scope, receive, send)
    starts = [m for m in sent if m["type"] == "http.response.start"]
    if not starts:
        return Answer(0, {}, b"", sent)
    assert len(starts) == 1, f"answered twice: {sent}"
    response_headers = {k.decode(): v.decode() for k, v in starts[0]["headers"]}
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return Answer(starts[0]["status"], response_headers, body, sent)


def session_for(user: str) -> str:
    return SIGNER.issue(Principal(user=user, role="viewer", token_id=None))


@pytest.mark.parametrize("length", ["abc", "-5", "1e3", ""])
async def test_a_content_length_that_is_not_a_count_is_400(length: str) -> None:
    probe = Probe()
    answer = await call(
        guarded(probe), "POST", "/healthz", headers={"content-length": length}, chunks=[b"x"]
    )
    assert answer.status == 400
    assert answer.error() == {
        "code": "BAD_REQUEST",
        "message": "invalid Content-Length",
        "details": None,
    }
    assert probe.bodies == []


async def test_a_protected_path_before_start_is_503_and_public_ones_are_served() -> None:
    app = guarded(Probe(), started=False)
    starting = await call(app, "GET", "/api/v1/me")
    assert starting.status == 503
    assert starting.error()["message"] == "the gateway is starting"
    assert starting.headers["retry-after"] == "1"
    health = await call(app, "GET", "/healthz")
    assert (health.status, orjson.loads(health.body)) == (200, {"status": "ok"})


async def test_missing_or_bad_credentials_are_401_and_the_route_never_runs() -> None:
    probe = Probe()
    app = guarded(probe)
    missing = await call(app, "GET", "/api/v1/me")
    assert missing.status == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert "missing credentials" in missing.error()["message"]
    malformed = await call(app, "GET", "/api/v1/me", headers={"authorization": "Bearer nope"})
    assert malformed.status == 401 and "malformed API token" in malformed.error()["message"]
    forged = await call(app, "GET", "/api/v1/me", query="session=" + session_for("a") + "x")
    assert forged.status == 401
    assert probe.users == []


async def test_a_refused_request_with_a_body_closes_the_connection() -> None:
    answer = await call(
        guarded(Probe()),
        "POST",
        "/api/v1/me",
        headers={"content-length": "3"},
        chunks=[b"abc"],
    )
    assert answer.status == 401 and answer.headers["connection"] == "close"
    bodiless = await call(guarded(Probe()), "GET", "/api/v1/me")
    assert "connection" not in bodiless.headers


async def test_the_route_gets_the_principal_the_guard_authenticated() -> None:
    probe = Probe()
    answer = await call(guarded(probe), "GET", "/api/v1/me", query="session=" + session_for("ann"))
    assert (answer.status, orjson.loads(answer.body)) == (200, {"user": "ann"})
    assert probe.users == ["ann"]


def test_a_scope_the_guard_did_not_authenticate_has_no_principal() -> None:
    with pytest.raises(InvalidCredentials, match="missing credentials"):
        request_principal({"type": "http"})
    with pytest.raises(InvalidCredentials):
        request_principal({"type": "http", "tickbase.principal": "admin"})


@pytest.mark.parametrize(
    ("path", "public"),
    [
        ("/healthz", True),
        ("/readyz", True),
        ("/openapi.json", True),
        ("/docs", True),
        ("/docs-assets/swagger.js", True),
        ("/docs/", False),
        ("/healthz/x", False),
        ("/metrics", False),
        ("/api/v1/tasks", False),
    ],
)
def test_only_health_and_documentation_are_public(path: str, public: bool) -> None:
    assert is_public(path) is public


async def test_a_chunked_body_reaches_the_route_whole_and_once() -> None:
    probe = Probe()
    answer = await call(
        guarded(probe),
        "POST",
        "/healthz",
        headers={"transfer-encoding": "chunked"},
        chunks=[b"a" * 500, b"b" * 500, b"c" * 24],
    )
    assert (answer.status, orjson.loads(answer.body)) == (200, {"size": 1024})
    assert probe.bodies == [b"a" * 500 + b"b" * 500 + b"c" * 24]
    assert probe.after_body == ["http.disconnect"]  # the next message is the client's own


async def test_one_byte_over_the_limit_is_413_and_the_route_never_runs() -> None:
    probe = Probe()
    answer = await call(
        guarded(probe),
        "POST",
        "/healthz",
        headers={"transfer-encoding": "chunked"},
        chunks=[b"a" * 1000, b"b" * 25],
    )
    assert answer.status == 413 and answer.headers["connection"] == "close"
    assert answer.error()["details"] == {"maxBodyBytes": 1024}
    assert probe.bodies == []


async def test_a_client_gone_mid_body_gets_no_answer_and_runs_nothing() -> None:
    probe = Probe()
    answer = await call(
        guarded(probe),
        "POST",
        "/healthz",
        headers={"content-length": "900"},
        chunks=[b"a" * 100, b"b" * 800],
        disconnect_early=True,
    )
    assert answer.messages == [] and probe.bodies == []


async def test_an_unexpected_error_is_one_500_without_its_text(
    caplog: pytest.LogCaptureFixture,
) -> None:
    session = session_for("ann")
    with caplog.at_level(logging.ERROR, logger="tickbase.gateway"):
        answer = await call(guarded(Probe()), "DELETE", "/api/v1/me", query="session=" + session)
    assert answer.status == 500
    assert answer.error() == {
        "code": "INTERNAL",
        "message": "internal error (logged on the server)",
        "details": None,
    }
    assert b"hunter2" not in answer.body
    logged = [r for r in caplog.records if r.name == "tickbase.gateway"]
    assert [r.getMessage() for r in logged] == ["unhandled error on DELETE /api/v1/me"]
    assert logged[0].exc_info is not None  # one traceback, on the server only


async def test_a_lost_database_is_503_with_one_warning_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    session = session_for("ann")
    with caplog.at_level(logging.WARNING, logger="tickbase.gateway"):
        answer = await call(guarded(Probe()), "PUT", "/api/v1/me", query="session=" + session)
    assert answer.status == 503 and answer.headers["retry-after"] == "1"
    assert answer.error()["code"] == "UNAVAILABLE"
    logged = [r for r in caplog.records if r.name == "tickbase.gateway"]
    assert len(logged) == 1 and logged[0].levelno == logging.WARNING
    assert logged[0].exc_info is None
    assert logged[0].getMessage() == (
        "database unavailable on PUT /api/v1/me: OperationalError: server closed the connection"
    )


async def test_an_error_after_the_response_began_is_not_answered_again() -> None:
    async def half(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise RuntimeError("mid-stream")

    answer = await call(RequestGuard(half, LIMITS), "GET", "/healthz")
    assert answer.status == 200
    assert [m["type"] for m in answer.messages] == ["http.response.start"]


async def test_options_lists_the_methods_of_the_path() -> None:
    app = guarded(Probe())
    answer = await call(app, "OPTIONS", "/healthz")
    assert answer.status == 204 and answer.body == b""
    assert answer.headers["allow"] == "GET, OPTIONS, POST"
    assert "connection" not in answer.headers
    session = "session=" + session_for("ann")
    mine = await call(app, "OPTIONS", "/api/v1/me", query=session)
    assert mine.headers["allow"] == "DELETE, GET, OPTIONS, PUT"
    nowhere = await call(app, "OPTIONS", "/api/v1/nowhere", query=session)
    assert nowhere.status == 404 and nowhere.error()["code"] == "NOT_FOUND"


async def test_options_with_an_unread_body_closes_the_connection() -> None:
    answer = await call(
        guarded(Probe()), "OPTIONS", "/healthz", headers={"content-length": "4"}, chunks=[b"abcd"]
    )
    assert answer.status == 204 and answer.headers["connection"] == "close"


async def test_websocket_scopes_pass_through_untouched() -> None:
    seen: list[str] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    async def nothing() -> Message:
        return {"type": "websocket.disconnect"}

    async def drop(message: Message) -> None:
        raise AssertionError(f"the guard answered a WebSocket: {message}")

    await RequestGuard(inner, LIMITS)({"type": "websocket", "path": "/ws"}, nothing, drop)
    assert seen == ["websocket"]
