"""A real gateway (uvicorn on 127.0.0.1) with a worker, in the test's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import websockets

import tickbase
from tickbase.gateway.app import create_gateway, serve
from tickbase.gateway.auth import TokenStore
from tickbase.gateway.server import ServerLimits
from tickbase.gateway.ws import WsLimits


def gateway_test_app(database_url: str) -> tickbase.App:
    """An app with the task types the gateway tests submit."""
    from tests.conftest import fast_settings

    app = tickbase.App(settings=fast_settings(database_url))

    @app.task(name="t.add")
    async def add(a: int, b: int) -> int:
        return a + b

    @app.task(name="t.boom")
    async def boom() -> None:
        raise RuntimeError("exploded on purpose")

    @app.task(name="t.sleep")
    async def sleep(seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "slept"

    return app


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class RunningGateway:
    app: tickbase.App
    port: int
    admin: str
    viewer: str
    limits: WsLimits
    frames: list[str] = field(default_factory=list)
    """Every frame any test client received (scanned for task ids)."""
    api: Any = None
    """The gateway's ASGI application (its state holds the hub and the feed)."""

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def headers(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.admin}"}

    def http(self, token: str | None = None) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base, headers=self.headers(token), timeout=10)

    def ws(self, token: str | None = None, **kwargs: Any) -> Any:
        return websockets.connect(
            f"ws://127.0.0.1:{self.port}/ws",
            additional_headers=self.headers(token),
            **kwargs,
        )


class Client:
    """A WebSocket client that records frames and waits for a request's frames."""

    def __init__(self, ws: Any, frames: list[str]) -> None:
        self.ws = ws
        self.frames = frames
        self.received: list[dict[str, Any]] = []

    async def send(self, frame: dict[str, Any] | str) -> None:
        await self.ws.send(frame if isinstance(frame, str) else orjson.dumps(frame).decode())

    async def request(self, request_id: str, action: str, **params: Any) -> None:
        await self.send(
            {"type": "request", "requestId": request_id, "action": action, "params": params}
        )

    async def next(self, timeout: float = 10) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            text = await self.ws.recv()
        self.frames.append(text)
        frame: dict[str, Any] = orjson.loads(text)
        self.received.append(frame)
        return frame

    async def finals(self, request_ids: set[str], timeout: float = 10) -> dict[str, dict[str, Any]]:
        """The final frames of all ``request_ids`` (they may come in any order)."""
        found: dict[str, dict[str, Any]] = {}
        async with asyncio.timeout(timeout):
            while set(found) != request_ids:
                frame = await self.next(timeout)
                if frame.get("requestId") in request_ids and frame["type"] in ("success", "error"):
                    assert frame["requestId"] not in found, f"two finals for {frame}"
                    found[frame["requestId"]] = frame
        return found

    async def until_final(self, request_id: str, timeout: float = 10) -> dict[str, Any]:
        """Frames until the success/error of ``request_id``; that frame."""
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.next(timeout)
                if frame.get("requestId") == request_id and frame["type"] in (
                    "success",
                    "error",
                ):
                    return frame


@contextlib.asynccontextmanager
async def running_gateway(
    app: tickbase.App,
    *,
    limits: WsLimits | None = None,
    worker: bool = True,
    server_limits: ServerLimits | None = None,
) -> AsyncIterator[RunningGateway]:
    """Serve ``app`` (already open) with a worker until the block ends."""
    tokens = TokenStore(app.pool)
    port = free_port()
    # Names are unique among live tokens: a test serving twice gets new ones.
    admin = (await tokens.create("admin", name=f"test-admin-{port}")).token
    viewer = (await tokens.create("viewer", name=f"test-viewer-{port}")).token
    limits = limits or WsLimits()
    stop, started = asyncio.Event(), asyncio.Event()
    api = create_gateway(app, limits=limits, server_limits=server_limits)
    server = asyncio.create_task(
        serve(
            api,
            port=port,
            stop=stop,
            started=started,
        )
    )
    the_worker = app.worker(concurrency=20) if worker else None
    working = asyncio.create_task(the_worker.run()) if the_worker else None
    try:
        async with asyncio.timeout(15):
            await started.wait()
        yield RunningGateway(app, port, admin, viewer, limits, api=api)
    finally:
        stop.set()
        if the_worker is not None and working is not None:
            the_worker.request_stop()
            await asyncio.wait_for(working, 15)
        await asyncio.wait_for(server, 15)
