"""The WebSocket protocol over a real uvicorn on 127.0.0.1 with real clients:
request → ack → exactly one success|error, pushes, limits, bad frames, restarts."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import orjson
import psycopg
import pytest
import websockets

import tickbase
from tests.support.gateway import Client, RunningGateway, gateway_test_app, running_gateway
from tickbase.gateway.ws import WsLimits

make_app = gateway_test_app


@pytest.fixture
async def gw(database_url: str) -> AsyncIterator[RunningGateway]:
    app = make_app(database_url)
    limits = WsLimits(max_in_flight_per_user=5, idle_seconds=30)
    async with app, running_gateway(app, limits=limits) as running:
        yield running
        assert_no_task_ids(running, app)


def assert_no_task_ids(running: RunningGateway, app: tickbase.App) -> None:
    """The server's task ids never reach a client: no id key, no id value."""
    for text in running.frames:
        frame = orjson.loads(text)
        assert "taskId" not in text and '"id"' not in text, text
        del frame


def submit(a: int = 1, b: int = 2) -> dict[str, Any]:
    return {"taskType": "t.add", "payload": {"a": a, "b": b}}


async def test_ack_then_exactly_one_success(gw: RunningGateway) -> None:
    async with gw.ws() as ws:
        client = Client(ws, gw.frames)
        await client.request("r1", "tasks.submit", **submit(2, 5))
        assert await client.next() == {"type": "ack", "requestId": "r1"}
        assert await client.next() == {"type": "success", "requestId": "r1", "data": 7}
        # nothing more for r1; the connection still serves
        await client.request("p", "ping")
        assert (await client.next())["type"] == "ack"
        pong = await client.next()
        assert pong["requestId"] == "p" and pong["data"]["pong"] is True


async def test_failure_and_cancel_end_with_one_error(
    gw: RunningGateway, sql_conn: psycopg.Connection[Any]
) -> None:
    async with gw.ws() as ws:
        client = Client(ws, gw.frames)
        await client.request("f", "tasks.submit", taskType="t.boom")
        assert await client.next() == {"type": "ack", "requestId": "f"}
        failed = await client.until_final("f")
        assert failed["type"] == "error" and failed["error"]["code"] == "TASK_FAILED"
        assert "exploded on purpose" in failed["error"]["message"]

        await client.request("slow", "tasks.submit", taskType="t.sleep", payload={"seconds": 30})
        assert (await client.next())["type"] == "ack"
        await client.request("c", "tasks.cancel", requestId="slow")
        frames = [await client.next() for _ in range(3)]  # ack c, success c, error slow (any order)
        by_id = {(f["requestId"], f["type"]) for f in frames}
        assert ("c", "ack") in by_id and ("c", "success") in by_id
        final = next(f for f in frames if f["requestId"] == "slow")
        assert final["type"] == "error" and final["error"]["code"] == "TASK_CANCELLED"
    finals = [f for f in client.received if f["type"] in ("success", "error") and "requestId" in f]
    counts: dict[str, int] = {}
    for frame in finals:
        counts[frame["requestId"]] = counts.get(frame["requestId"], 0) + 1
    assert counts == {"f": 1, "slow": 1, "c": 1}


async def test_bad_frames_get_errors_and_the_connection_stays(gw: RunningGateway) -> None:
    async with gw.ws() as ws:
        client = Client(ws, gw.frames)
        await client.send("not json")
        frame = await client.next()
        assert frame["type"] == "error" and frame["error"]["code"] == "INVALID_FRAME"
        assert "requestId" not in frame
        await client.send("[1, 2]")
        assert (await client.next())["error"]["code"] == "INVALID_FRAME"
        await client.send({"type": "hello", "requestId": "x1"})
        unknown_type = await client.next()
        assert unknown_type["error"]["code"] == "UNKNOWN_TYPE" and unknown_type["requestId"] == "x1"
        await client.send({"type": "request", "action": "ping"})
        assert (await client.next())["error"]["code"] == "MISSING_REQUEST_ID"
        await client.send({"type": "request", "requestId": "bad id with spaces", "action": "ping"})
        assert (await client.next())["error"]["code"] == "INVALID_REQUEST_ID"
        await client.request("x2", "tasks.explode")
        unknown_action = await client.next()
        assert unknown_action["error"]["code"] == "UNKNOWN_ACTION"
        assert "tasks.submit" in unknown_action["error"]["details"]["actions"]
        # params failing validation: ack, then one error naming the field
        await client.request("x3", "tasks.submit", taskType="t.add", priority="high")
        assert await client.next() == {"type": "ack", "requestId": "x3"}
        invalid = await client.next()
        assert invalid["error"]["code"] == "VALIDATION_ERROR"
        assert any(d["path"].endswith("priority") for d in invalid["error"]["details"])
        await client.request("x4", "tasks.submit", taskType="no.such.type")
        await client.next()
        assert (await client.next())["error"]["code"] == "UNKNOWN_TASK_TYPE"
        await client.request("x5", "subscribe", channel="nowhere")
        await client.next()
        assert (await client.next())["error"]["code"] == "UNKNOWN_CHANNEL"
        # duplicate in-flight requestId
        await client.request("d", "tasks.submit", taskType="t.sleep", payload={"seconds": 1})
        await client.request("d", "tasks.submit", taskType="t.sleep", payload={"seconds": 1})
        assert await client.next() == {"type": "ack", "requestId": "d"}
        duplicate = await client.next()
        assert duplicate["error"]["code"] == "DUPLICATE_REQUEST" and duplicate["requestId"] == "d"
        assert (await client.until_final("d"))["data"] == "slept"
        # still open and serving
        await client.request("alive", "ping")
        assert (await client.until_final("alive"))["type"] == "success"


async def test_viewer_cannot_write(gw: RunningGateway, sql_conn: psycopg.Connection[Any]) -> None:
    async with gw.ws(gw.viewer) as ws:
        client = Client(ws, gw.frames)
        for request_id, action, params in (
            ("v1", "tasks.submit", submit()),
            ("v2", "tasks.cancel", {"requestId": "whatever"}),
            ("v3", "schedules.trigger", {"name": "whatever"}),
        ):
            await client.request(request_id, action, **params)
            assert await client.next() == {"type": "ack", "requestId": request_id}
            denied = await client.next()
            assert denied["error"]["code"] == "FORBIDDEN", denied
        await client.request("v4", "tasks.status", requestId="nothing")
        await client.next()
        assert (await client.next())["error"]["code"] == "NOT_FOUND"
    assert sql_conn.execute("SELECT count(*) FROM tickbase.tasks").fetchone() == (0,)


async def test_auth_failure_and_fourth_connection_are_closed_with_codes(
    gw: RunningGateway,
) -> None:
    for headers in ({}, {"Authorization": "Bearer tb_" + "y" * 43}, {"Authorization": "Basic x"}):
        async with websockets.connect(
            f"ws://127.0.0.1:{gw.port}/ws", additional_headers=headers
        ) as ws:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
            assert "unauthorized" in closed.value.rcvd.reason
    async with gw.ws() as first, gw.ws() as second, gw.ws() as third:
        async with gw.ws() as fourth:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await fourth.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4429
            assert "at most 3" in closed.value.rcvd.reason
        for ws in (first, second, third):  # the first three are untouched
            client = Client(ws, gw.frames)
            await client.request("still", "ping")
            assert (await client.until_final("still"))["type"] == "success"


async def test_oversized_frame_closes_with_1009(gw: RunningGateway) -> None:
    async with gw.ws() as ws:
        await ws.send("x" * (64 * 1024 + 1))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


async def test_in_flight_cap_answers_rate_limited(gw: RunningGateway) -> None:
    async with gw.ws() as ws:
        client = Client(ws, gw.frames)
        for n in range(6):  # the cap is 5 in this fixture
            await client.request(
                f"s{n}", "tasks.submit", taskType="t.sleep", payload={"seconds": 1}
            )
        frames = [await client.next() for _ in range(6)]
        assert [f["type"] for f in frames[:5]] == ["ack"] * 5
        assert frames[5]["requestId"] == "s5" and frames[5]["error"]["code"] == "RATE_LIMITED"
        finals = await client.finals({f"s{n}" for n in range(5)})
        assert {frame["data"] for frame in finals.values()} == {"slept"}
        await client.request("after", "tasks.submit", **submit())  # capacity is back
        assert (await client.until_final("after"))["data"] == 3


async def test_task_pushes_and_status_after_reconnect(gw: RunningGateway) -> None:
    async with gw.ws() as ws:
        client = Client(ws, gw.frames)
        await client.request("sub", "subscribe", channel="task")
        assert (await client.until_final("sub"))["data"] == {"channels": ["task"]}
        await client.request("job", "tasks.submit", taskType="t.sleep", payload={"seconds": 0.3})
        final = await client.until_final("job")
        assert final["data"] == "slept"
        updates = [f["content"] for f in client.received if f["type"] == "update"]
        assert {"requestId": "job", "status": "running"} in updates
        assert updates[-1] == {"requestId": "job", "status": "succeeded"}
    # a new connection (a client that lost the first one) asks for the final state
    async with gw.ws() as ws:
        client = Client(ws, gw.frames)
        await client.request("q", "tasks.status", requestId="job")
        state = await client.until_final("q")
        assert state["data"] == {
            "requestId": "job",
            "action": "tasks.submit",
            "status": "succeeded",
            "data": "slept",
            "error": None,
        }
        # re-sending the same submit never runs the task twice
        await client.request("job", "tasks.submit", taskType="t.sleep", payload={"seconds": 0.3})
        assert (await client.until_final("job"))["data"] == "slept"


async def test_idle_connection_is_closed(database_url: str) -> None:
    app = make_app(database_url)
    limits = WsLimits(idle_seconds=0.5)
    async with app, running_gateway(app, limits=limits) as running, running.ws() as ws:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            async with asyncio.timeout(5):
                await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4408


async def test_gateway_restart_mid_request_loses_nothing(
    database_url: str, sql_conn: psycopg.Connection[Any]
) -> None:
    app = make_app(database_url)
    frames: list[str] = []
    async with app:
        async with running_gateway(app, worker=False) as first:
            admin = first.admin
            async with first.ws() as ws:
                client = Client(ws, frames)
                await client.request("survivor", "tasks.submit", **submit(20, 22))
                assert await client.next() == {"type": "ack", "requestId": "survivor"}
        # the gateway is gone; a worker runs the task meanwhile
        worker = app.worker()
        running = asyncio.create_task(worker.run())
        try:
            async with running_gateway(app, worker=False) as second, second.ws(admin) as ws:
                client = Client(ws, frames)

                async def final_state() -> dict[str, Any]:
                    await client.request("ask", "tasks.status", requestId="survivor")
                    return await client.until_final("ask")

                for _ in range(50):
                    state = await final_state()
                    if state["data"]["status"] == "succeeded":
                        break
                    await asyncio.sleep(0.1)
                assert state["data"]["data"] == 42
        finally:
            worker.request_stop()
            await running
    assert sql_conn.execute(
        "SELECT count(*) FROM tickbase.tasks WHERE request_id = 'survivor'"
    ).fetchone() == (1,)
    assert not any(re.search(r'"(task)?[iI]d"', text) for text in frames)


async def test_two_gateway_processes_share_requests(database_url: str) -> None:
    app = make_app(database_url)
    frames: list[str] = []
    async with (
        app,
        running_gateway(app) as first,
        running_gateway(app, worker=False) as second,
        first.ws() as ws_a,
        second.ws(first.admin) as ws_b,
    ):
        a, b = Client(ws_a, frames), Client(ws_b, frames)
        await a.request("lb-1", "tasks.submit", **submit(1, 1))
        assert (await a.until_final("lb-1"))["data"] == 2
        # the same user behind another gateway sees the request (the ledger is shared)
        await b.request("lb-q", "tasks.status", requestId="lb-1")
        assert (await b.until_final("lb-q"))["data"]["status"] == "succeeded"
        # and a request submitted through the second is answered by the second
        await b.request("lb-2", "tasks.submit", **submit(5, 5))
        assert (await b.until_final("lb-2"))["data"] == 10
