"""The gateway's ASGI application (FastAPI) and its server (uvicorn).

``create_gateway(app)`` builds the FastAPI app over an open or openable
:class:`tickbase.App`: HTTP ``/api/v1``, WebSocket ``/ws``, ``/metrics``,
``/healthz``, ``/readyz`` and ``/openapi.json``. ``serve(...)`` runs it on
uvicorn until a stop event is set. The gateway holds no state that matters:
any number of gateway processes may serve the same database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse, Response

from tickbase._version import __version__
from tickbase.app import App
from tickbase.db.migrate import migration_status
from tickbase.errors import InvalidCredentials
from tickbase.gateway.auth import SessionSigner, TokenStore, authenticate, parse_bearer
from tickbase.gateway.errors import install_error_handlers
from tickbase.gateway.http_api import Gateway, router
from tickbase.gateway.hub import Hub
from tickbase.gateway.marketdata_api import router as marketdata_router
from tickbase.gateway.schemas import HealthOut
from tickbase.gateway.ws import CLOSE_TOO_MANY, CLOSE_UNAUTHORIZED, Connection, WsLimits

logger = logging.getLogger("tickbase.gateway")

MAX_FRAME_BYTES = 64 * 1024
PING_SECONDS = 30.0


def create_gateway(app: App, *, limits: WsLimits | None = None) -> FastAPI:
    """The gateway over ``app`` (opened by the lifespan if it is not open yet)."""
    ws_limits = limits or WsLimits()

    @contextlib.asynccontextmanager
    async def lifespan(api: FastAPI) -> AsyncIterator[None]:
        opened_here = not app.is_open
        if opened_here:
            await app.open()
        hub = Hub(app.pool, app.listener)
        await hub.start()
        api.state.gateway = Gateway(app, TokenStore(app.pool), await SessionSigner.load(app.pool))
        api.state.hub = hub
        try:
            yield
        finally:
            await hub.stop()
            if opened_here:
                await app.close()

    api = FastAPI(
        title="tickbase",
        version=__version__,
        description="Tasks, schedules, workflows and the cluster, over HTTP and WebSocket.",
        lifespan=lifespan,
    )
    install_error_handlers(api)
    api.include_router(router)
    api.include_router(marketdata_router)

    @api.get("/healthz", response_model=HealthOut, tags=["health"])
    async def healthz() -> Any:
        """The process is up (no dependency checked)."""
        return {"status": "ok"}

    @api.get(
        "/readyz",
        response_model=HealthOut,
        tags=["health"],
        responses={503: {"model": HealthOut, "description": "not ready, with the reason"}},
    )
    async def readyz(request: Request) -> Any:
        """Ready: the database answers and its schema is current."""
        try:
            async with asyncio.timeout(5):
                async with app.pool.connection() as conn:
                    status = await migration_status(conn)
        except Exception as exc:  # any failure to answer is "not ready", with the reason
            return JSONResponse(
                {"status": "unavailable", "details": {"database": str(exc)[:200]}},
                status_code=503,
            )
        if not status.current:
            return JSONResponse(
                {
                    "status": "unavailable",
                    "details": {"pendingMigrations": [m.version for m in status.pending]},
                },
                status_code=503,
            )
        return {"status": "ok", "details": {"schemaVersion": status.database_version}}

    @api.get("/metrics", tags=["health"], response_class=Response)
    async def metrics() -> Response:
        """Prometheus exposition of the cluster's figures (read from the database)."""
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        from tickbase.cluster.metrics import ClusterCollector

        assert app.url is not None
        registry = CollectorRegistry()
        registry.register(ClusterCollector(app.url))
        body = await asyncio.to_thread(generate_latest, registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    @api.websocket("/ws")
    async def websocket_endpoint(websocket: WebSocket) -> None:
        gateway: Gateway = websocket.app.state.gateway
        try:
            principal = await authenticate(
                gateway.tokens,
                gateway.signer,
                bearer=parse_bearer(websocket.headers.get("authorization")),
                session=websocket.query_params.get("session"),
            )
        except InvalidCredentials as exc:
            # Accepted then closed, so that the client sees the code and reason
            # (a refused handshake only shows an HTTP 403).
            await websocket.accept()
            await websocket.close(CLOSE_UNAUTHORIZED, _reason(f"unauthorized: {exc}"))
            return
        user = principal.user
        if ws_limits.connections[user] >= ws_limits.max_connections_per_user:
            await websocket.accept()
            await websocket.close(
                CLOSE_TOO_MANY,
                f"too many connections: at most {ws_limits.max_connections_per_user} per user",
            )
            return
        ws_limits.connections[user] += 1
        try:
            await websocket.accept()
            await Connection(
                websocket, principal, gateway.service, websocket.app.state.hub, ws_limits
            ).serve()
        finally:
            ws_limits.connections[user] -= 1

    return api


def _reason(text: str) -> str:
    """A close reason fits in 123 bytes."""
    encoded = text.encode()[:123]
    return encoded.decode(errors="ignore")


async def serve(
    api: FastAPI,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    stop: asyncio.Event | None = None,
    started: asyncio.Event | None = None,
) -> None:
    """Serve ``api`` on uvicorn until ``stop`` is set."""
    import uvicorn

    config = uvicorn.Config(
        api,
        host=host,
        port=port,
        ws_max_size=MAX_FRAME_BYTES,
        ws_ping_interval=PING_SECONDS,
        ws_ping_timeout=PING_SECONDS,
        log_level="warning",
        lifespan="on",
        access_log=False,
    )
    server = uvicorn.Server(config)
    # The CLI owns the signals (it stops every role together, gateway included).
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    serving = asyncio.create_task(server.serve())
    waiter = asyncio.create_task((stop or asyncio.Event()).wait())
    try:
        while not server.started and not serving.done():  # noqa: ASYNC110 (uvicorn has no started event)
            await asyncio.sleep(0.01)
        if started is not None and server.started:
            started.set()
        await asyncio.wait({serving, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        server.should_exit = True
        waiter.cancel()
        await serving
