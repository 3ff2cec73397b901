"""Edge cases of the WebSocket protocol over a real uvicorn on 127.0.0.1: every
refused frame names what is wrong, channels come and go, ping answers, a viewer
is refused each write, and cancelling a running task ends it cancelled."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from tests.support.gateway import Client, RunningGateway, gateway_test_app, running_gateway
from tests.support.waiting import wait_until
from tickbase.gateway.ws import WsLimits

ACTIONS = [
    "ping",
    "schedules.trigger",
    "subscribe",
    "tasks.cancel",
    "tasks.status",
    "tasks.submit",
    "unsubscribe",
]


@pytest.fixture
async def gw(database_url: str) -> AsyncIterator[RunningGateway]:
    app = gateway_test_app(database_url)
    async with app, running_gateway(app, limits=WsLimits(idle_seconds=30)) as running:
        yield running


async def refused(client: Client, frame: dict[str, Any] | str) -> dict[str, Any]:
    """The error a frame refused before its ack gets (and no ack)."""
    await client.send(frame)
    answer = await client.next()
    assert answer["type"] == "error", answer
    return answer


async def answered(client: Client, request_id: str, action: str, params: Any) -> dict[str, Any]:
    """Ack, then the one final frame of a request."""
    await client.send(
        {"type": "request", "requestId": request_id, "action": action, "params": params}
    )
    assert await client.next() == {"type": "ack", "requestId": request_id}
    return await client.until_final(request_id)


def paths(error_frame: dict[str, Any]) -> list[str]:
    return [detail["path"] for detail in error_frame["error"]["details"]]


async def test_unknown_actions_are_named(gw: RunningGateway) -> None:
    async with gw.ws() as ws:
        client = Client(ws, gw.frames)
        for action, named in (("tasks.explode", "'tasks.explode'"), (5, "5"), (None, "None")):
            frame: dict[str, Any] = {"type": "request", "requestId": "u1"}
            if action is not None:
                frame["action"] = action
            answer = await refused(client, frame)
            assert answer["requestId"] == "u1"
            assert answer["error"] == {
                "code": "UNKNOWN_ACTION",
                "message": f"unknown action {named}",
                "details": {"actions": ACTIONS},
            }
        # Actions are case-sensitive: no near miss is run.
        answer = await refused(client, {"type": "request", "requestId": "u2", "action": "PING"})
        assert answer["error"]["message"] == "unknown action 'PING'"
        # The refused requestId is not left in flight: it can be used at once.
        pong = await answered(client, "u1", "ping", {})
        assert pong["type"] == "success"


async def test_envelope_errors_name_the_field(gw: RunningGateway) -> None:
    async with gw.ws() as ws:
        client = Client(ws, gw.frames)
        answer = await refused(client, '{"type": "request",')
        assert answer["error"]["code"] == "INVALID_FRAME"
        assert answer["error"]["message"].startswith("not JSON: ")
        answer = await refused(client, '"just a string"')
        assert answer["error"] == {
            "code": "INVALID_FRAME",
            "message": "a frame must be a JSON object",
            "details": None,
        }
        for request_id in (5, True, ["r"], "", "x" * 129, "tab\there", "é"):
            answer = await refused(
                client, {"type": "request", "requestId": request_id, "action": "ping"}
            )
            assert "requestId" not in answer  # an invalid one is never echoed
            assert answer["error"] == {
                "code": "INVALID_REQUEST_ID",
                "message": "requestId must be 1 to 128 letters, digits or _ . : -",
                "details": None,
            }, request_id
        # The longest valid requestId, with every allowed punctuation mark.
        longest = "a.b:c_d-" + "z" * 120
        assert (await answered(client, longest, "ping", {}))["type"] == "success"
        answer = await refused(client, {"type": "request", "action": "ping"})
        assert answer["error"]["code"] == "MISSING_REQUEST_ID"
        assert answer["error"]["message"] == "a request needs a requestId"
        assert "requestId" not in answer
        answer = await refused(client, {"requestId": "t1", "action": "ping"})
        assert answer["requestId"] == "t1"
        assert answer["error"]["code"] == "UNKNOWN_TYPE"
        assert answer["error"]["message"] == (
            "unknown frame type None: clients send type 'request'"
        )
        answer = await refused(client, {"type": "response", "requestId": "t2"})
        assert answer["error"]["message"].startswith("unknown frame type 'response'")


async def test_params_errors_name_the_field(gw: RunningGateway) -> None:
    async with gw.ws() as ws:
        client = Client(ws, gw.frames)
        for params in ([1], "x", 3, None):
            answer = await answered(client, "p1", "tasks.status", params)
            assert answer["error"] == {
                "code": "VALIDATION_ERROR",
                "message": "params must be a JSON object",
                "details": None,
            }, params
        missing = await answered(client, "p2", "tasks.status", {})
        assert missing["error"]["code"] == "VALIDATION_ERROR"
        assert missing["error"]["message"] == "invalid params"
        assert paths(missing) == ["requestId"]
        wrong_type = await answered(client, "p3", "tasks.cancel", {"requestId": 5})
        assert paths(wrong_type) == ["requestId"]
        extra = await answered(client, "p4", "subscribe", {"channel": "task", "colour": "red"})
        assert paths(extra) == ["colour"]
        no_channel = await answered(client, "p5", "unsubscribe", {})
        assert paths(no_channel) == ["channel"]
        bad_name = await answered(client, "p6", "schedules.trigger", {"name": ["x"]})
        assert paths(bad_name) == ["name"]
        bad_payload = await answered(
            client, "p7", "tasks.submit", {"taskType": "t.add", "maxAttempts": "3"}
        )
        assert paths(bad_payload) == ["maxAttempts"]
        # a submit's own requestId belongs in the envelope, not in params
        in_params = await answered(
            client, "p8", "tasks.submit", {"taskType": "t.add", "requestId": "other"}
        )
        assert paths(in_params) == ["requestId"]
        # params left out means {}: ping needs none
        await client.send({"type": "request", "requestId": "p9", "action": "ping"})
        assert (await client.next())["type"] == "ack"
        assert (await client.until_final("p9"))["type"] == "success"


async def test_channels_subscribe_and_unsubscribe(gw: RunningGateway) -> None:
    async with gw.ws() as ws:
        client = Client(ws, gw.frames)
        unknown = await answered(client, "s0", "subscribe", {"channel": "nowhere"})
        assert unknown["error"] == {
            "code": "UNKNOWN_CHANNEL",
            "message": "unknown channel 'nowhere'",
            "details": {"channels": ["alert", "kline", "stats", "task", "tasks"]},
        }
        # case matters; and a refused channel is not added
        assert (await answered(client, "s1", "subscribe", {"channel": "Task"}))["error"][
            "code"
        ] == "UNKNOWN_CHANNEL"
        assert (await answered(client, "s2", "unsubscribe", {"channel": "task"}))["data"] == {
            "channels": []
        }
        assert (await answered(client, "s3", "subscribe", {"channel": "task"}))["data"] == {
            "channels": ["task"]
        }
        assert (await answered(client, "s4", "subscribe", {"channel": "alert"}))["data"] == {
            "channels": ["alert", "task"]
        }
        assert (await answered(client, "s5", "subscribe", {"channel": "task"}))["data"] == {
            "channels": ["alert", "task"]
        }
        assert (await answered(client, "s6", "unsubscribe", {"channel": "task"}))["data"] == {
            "channels": ["alert"]
        }
        # unsubscribing what was never subscribed (or does not exist) changes nothing
        assert (await answered(client, "s7", "unsubscribe", {"channel": "nowhere"}))["data"] == {
            "channels": ["alert"]
        }

        # Unsubscribed from task: a request gets its final frame but no updates.
        start = len(client.received)
        done = await answered(
            client, "job", "tasks.submit", {"taskType": "t.sleep", "payload": {"seconds": 0.3}}
        )
        assert done == {"type": "success", "requestId": "job", "data": "slept"}
        assert [f for f in client.received[start:] if f["type"] == "update"] == []

        # Subscribed again: the same kind of request is pushed its states.
        await answered(client, "s8", "subscribe", {"channel": "task"})
        start = len(client.received)
        await answered(
            client, "job2", "tasks.submit", {"taskType": "t.sleep", "payload": {"seconds": 0.3}}
        )
        updates = [f for f in client.received[start:] if f["type"] == "update"]
        assert {"requestId": "job2", "status": "running"} in [f["content"] for f in updates]
        assert all(f["channel"] == "task" for f in updates)


async def test_ping_answers_pong_with_the_server_time(gw: RunningGateway) -> None:
    async with gw.ws(gw.viewer) as ws:  # a viewer may ping
        client = Client(ws, gw.frames)
        before = time.time()
        pong = await answered(client, "ping-1", "ping", {})
        after = time.time()
        assert pong["type"] == "success" and pong["requestId"] == "ping-1"
        assert set(pong["data"]) == {"pong", "time"} and pong["data"]["pong"] is True
        # same host, same clock
        assert before - 1 <= pong["data"]["time"] <= after + 1


async def test_unknown_request_ids_are_not_found(gw: RunningGateway) -> None:
    async with gw.ws() as ws:
        client = Client(ws, gw.frames)
        for request_id, action, params in (
            ("q1", "tasks.status", {"requestId": "never-sent"}),
            ("q2", "tasks.cancel", {"requestId": "never-sent"}),
            ("q3", "schedules.trigger", {"name": "no-such-schedule"}),
        ):
            answer = await answered(client, request_id, action, params)
            assert answer["type"] == "error" and answer["error"]["code"] == "NOT_FOUND", answer
        # only a submit leaves a request behind: a finished ping is not found
        assert (await answered(client, "pinged", "ping", {}))["type"] == "success"
        answer = await answered(client, "q4", "tasks.status", {"requestId": "pinged"})
        assert answer["error"]["code"] == "NOT_FOUND"
        # the connection serves on
        assert (await answered(client, "q5", "ping", {}))["type"] == "success"


async def test_viewer_is_refused_every_write_before_its_params_are_read(
    gw: RunningGateway, sql_conn: psycopg.Connection[Any]
) -> None:
    async with gw.ws(gw.viewer) as ws:
        client = Client(ws, gw.frames)
        for request_id, action, params in (
            ("w1", "tasks.submit", {"taskType": "t.add", "payload": {"a": 1, "b": 2}}),
            ("w2", "tasks.cancel", {"requestId": "anything"}),
            ("w3", "schedules.trigger", {"name": "anything"}),
            ("w4", "tasks.submit", {"nonsense": True}),  # invalid, still 403 first
            ("w5", "tasks.cancel", [1]),
        ):
            answer = await answered(client, request_id, action, params)
            assert answer["error"] == {
                "code": "FORBIDDEN",
                "message": f"{action} needs an admin token",
                "details": None,
            }, answer
        # reads stay open to a viewer
        assert (await answered(client, "r1", "subscribe", {"channel": "alert"}))["type"] == (
            "success"
        )
        assert (await answered(client, "r2", "tasks.status", {"requestId": "w1"}))["error"][
            "code"
        ] == "NOT_FOUND"  # a refused submit left no request behind
    assert sql_conn.execute("SELECT count(*) FROM tickbase.tasks").fetchone() == (0,)


async def test_cancelling_a_running_task_ends_it_cancelled(
    gw: RunningGateway, sql_conn: psycopg.Connection[Any]
) -> None:
    async with gw.ws() as ws:
        client = Client(ws, gw.frames)
        await answered(client, "sub", "subscribe", {"channel": "task"})
        await client.request("long", "tasks.submit", taskType="t.sleep", payload={"seconds": 60})
        assert await client.next() == {"type": "ack", "requestId": "long"}
        async with asyncio.timeout(10):
            while (await client.next()) != {
                "type": "update",
                "channel": "task",
                "content": {"requestId": "long", "status": "running"},
            }:
                pass
        assert sql_conn.execute(
            "SELECT status FROM tickbase.tasks WHERE request_id = 'long'"
        ).fetchone() == ("running",)
        started = time.monotonic()
        await client.request("stop", "tasks.cancel", requestId="long")
        finals = await client.finals({"stop", "long"})
        assert finals["stop"]["type"] == "success"
        # a running task is asked to stop: it is still running when cancel answers
        assert finals["stop"]["data"] == {"requestId": "long", "status": "running"}
        assert finals["long"]["type"] == "error"
        assert finals["long"]["error"]["code"] == "TASK_CANCELLED"
        assert time.monotonic() - started < 10  # not waiting out the 60 s sleep
        state = await answered(client, "ask", "tasks.status", {"requestId": "long"})
        assert state["data"]["status"] == "cancelled"
        assert state["data"]["error"]["code"] == "TASK_CANCELLED"

    def stored() -> Any:
        return sql_conn.execute(
            "SELECT status, finished_at IS NOT NULL FROM tickbase.tasks WHERE request_id = 'long'"
        ).fetchone()

    async def is_cancelled() -> bool:
        return bool(stored() == ("cancelled", True))

    await wait_until(is_cancelled, timeout=10)
    # Cancelling again: a conflict naming the request, never the server's task id.
    async with gw.ws() as ws:
        client = Client(ws, gw.frames)
        again = await answered(client, "stop2", "tasks.cancel", {"requestId": "long"})
        assert again["error"] == {
            "code": "CONFLICT",
            "message": "cannot cancel request 'long': it has already been cancelled",
            "details": None,
        }
    assert stored() == ("cancelled", True)
    task_id = sql_conn.execute("SELECT id FROM tickbase.tasks WHERE request_id = 'long'").fetchone()
    assert task_id is not None
    assert not any(f"task {task_id[0]}" in text for text in gw.frames)
