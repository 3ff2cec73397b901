"""The gateway's ASGI application (FastAPI) and its server (uvicorn).

``create_gateway(app)`` builds the FastAPI app over an open or openable
:class:`tickbase.App`: HTTP ``/api/v1``, WebSocket ``/ws``, ``/metrics``,
``/healthz``, ``/readyz``, ``/openapi.json`` and its pages ``/docs`` and
``/redoc`` (assets served locally, see :mod:`tickbase.gateway.docs`). ``serve(...)``
(:mod:`tickbase.gateway.server`) runs it on uvicorn, every connection
bounded, until a stop event is set. The gateway holds no state that matters:
any number of gateway processes may serve the same database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Depends, FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse, Response

from tickbase._version import __version__
from tickbase.app import App
from tickbase.dashboard import install_dashboard
from tickbase.db.migrate import migration_status
from tickbase.errors import InvalidCredentials
from tickbase.gateway.auth import SessionSigner, TokenStore, authenticate, parse_bearer
from tickbase.gateway.docs import install_docs
from tickbase.gateway.errors import install_error_handlers
from tickbase.gateway.feed import DashboardFeed
from tickbase.gateway.figures import ClusterFigures
from tickbase.gateway.guard import RequestGuard
from tickbase.gateway.hub import Hub
from tickbase.gateway.kline_ws import KlineFanout
from tickbase.gateway.routes import (
    admin,
    cluster,
    dashboard,
    marketdata,
    realtime,
    requests,
    schedules,
    session,
    tasks,
    udf,
    workflows,
)
from tickbase.gateway.routes.deps import Gateway, current_principal
from tickbase.gateway.schemas import HealthOut
from tickbase.gateway.server import ServerLimits, serve
from tickbase.gateway.ws import CLOSE_TOO_MANY, CLOSE_UNAUTHORIZED, Connection, WsLimits

logger = logging.getLogger("tickbase.gateway")


def create_gateway(
    app: App, *, limits: WsLimits | None = None, server_limits: ServerLimits | None = None
) -> FastAPI:
    """The gateway over ``app`` (opened by the lifespan if it is not open yet).

    ``server_limits`` default to the app's settings (``TICKBASE_MAX_BODY_BYTES``,
    ``TICKBASE_MAX_CONNECTIONS``, ...); :func:`serve` applies the same ones.
    """
    ws_limits = limits or WsLimits()
    bounds = server_limits or ServerLimits.from_settings(app.settings)
    # The pipeline is looked up when asked for: `tickbase up` puts it in the
    # extensions before serving, and a test may do so after creating the gateway.
    klines = KlineFanout(lambda: app.extensions.get("realtime"))

    @contextlib.asynccontextmanager
    async def lifespan(api: FastAPI) -> AsyncIterator[None]:
        opened_here = not app.is_open
        if opened_here:
            await app.open()
        hub = Hub(app.pool, app.listener)
        await hub.start()
        assert app.url is not None
        figures = ClusterFigures(app.url)
        feed = DashboardFeed(app.pool, app.listener, figures)
        await feed.start()
        api.state.gateway = Gateway(app, TokenStore(app.pool), await SessionSigner.load(app.pool))
        api.state.hub = hub
        api.state.figures = figures
        api.state.feed = feed
        try:
            yield
        finally:
            klines.close()
            await feed.stop()
            await hub.stop()
            figures.close()
            if opened_here:
                await app.close()

    api = FastAPI(
        title="tickbase",
        version=__version__,
        description="Tasks, schedules, workflows and the cluster, over HTTP and WebSocket.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    api.state.server_limits = bounds
    api.state.klines = klines
    install_error_handlers(api)
    # Outermost of our layers: credentials and body size are checked before
    # any route, dependency or body parser runs.
    api.add_middleware(RequestGuard, limits=bounds)
    # In this order: the routes, and so the OpenAPI paths, keep their order.
    for module in (tasks, requests, schedules, workflows, cluster, session):
        api.include_router(module.router)
    api.include_router(admin.router)
    api.include_router(marketdata.router)
    api.include_router(realtime.router)
    api.include_router(udf.router)
    api.include_router(dashboard.router)
    install_docs(api)
    install_dashboard(api)

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

    @api.get(
        "/metrics",
        tags=["health"],
        response_class=Response,
        dependencies=[Depends(current_principal)],
    )
    async def metrics(request: Request) -> Response:
        """Prometheus exposition of the cluster's figures (any API token; cached for 1 s),
        and of the real-time pipeline's when one runs in this process.

        Give Prometheus a viewer token: ``authorization: {credentials: <token>}``
        in its scrape config. The figures are read over one connection of the
        gateway's own at most once a second, however often it is scraped. The
        pipeline (``app.extensions["realtime"]``, which may appear after the
        gateway was built) is looked up and read at each scrape, in memory.
        """
        from prometheus_client import CONTENT_TYPE_LATEST

        from tickbase.marketdata.realtime.metrics import exposition

        figures: ClusterFigures = request.app.state.figures
        cluster_text = await figures.exposition()
        pipeline = app.extensions.get("realtime")
        realtime_text = exposition(pipeline.figures() if pipeline is not None else None)
        return Response(cluster_text + realtime_text, media_type=CONTENT_TYPE_LATEST)

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
        if not ws_limits.acquire_connection(principal.key):
            await websocket.accept()
            await websocket.close(
                CLOSE_TOO_MANY,
                f"too many connections: at most {ws_limits.max_connections_per_user} per user",
            )
            return
        try:
            await websocket.accept()
            await Connection(
                websocket,
                principal,
                gateway.service,
                websocket.app.state.hub,
                ws_limits,
                websocket.app.state.feed,
                klines,
            ).serve()
        finally:
            ws_limits.release_connection(principal.key)

    return api


def _reason(text: str) -> str:
    """A close reason fits in 123 bytes."""
    encoded = text.encode()[:123]
    return encoded.decode(errors="ignore")


__all__ = ["create_gateway", "serve"]
