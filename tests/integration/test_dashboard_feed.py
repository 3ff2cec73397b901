"""The dashboard feed: the ``tasks`` and ``stats`` channels and the overview (issue 16).

Over a real gateway and real WebSockets: a subscriber of ``tasks`` is pushed
the summary of a task enqueued elsewhere and then its end, in the API's
camelCase; ``stats`` pushes the same overview ``GET /api/v1/dashboard/overview``
answers. The database load does not grow with the number of dashboards:
twenty subscribed connections cost the same task-changes queries as one (the
feed reads once per beat for all), and nobody subscribed costs none.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from tests.support.gateway import Client, RunningGateway, gateway_test_app, running_gateway
from tickbase.gateway.feed import DashboardFeed
from tickbase.gateway.ws import WsLimits


@pytest.fixture
async def gw(database_url: str) -> AsyncIterator[RunningGateway]:
    app = gateway_test_app(database_url)
    # Twenty dashboards of one user (the default allows three connections each).
    async with app, running_gateway(app, limits=WsLimits(max_connections_per_user=25)) as running:
        yield running


async def subscribed(client: Client, channel: str) -> None:
    request_id = f"sub-{channel}"
    await client.send(
        {
            "type": "request",
            "requestId": request_id,
            "action": "subscribe",
            "params": {"channel": channel},
        }
    )
    assert await client.next() == {"type": "ack", "requestId": request_id}
    final = await client.until_final(request_id)
    assert final["type"] == "success" and channel in final["data"]["channels"]


async def pushes_until(
    client: Client, channel: str, done: Any, timeout: float = 10
) -> list[dict[str, Any]]:
    """The ``channel`` pushes received until ``done(content)`` holds."""
    seen = []
    async with asyncio.timeout(timeout):
        while True:
            frame = await client.next(timeout)
            if frame.get("type") == "update" and frame.get("channel") == channel:
                seen.append(frame["content"])
                if done(frame["content"]):
                    return seen


def feed_of(gw: RunningGateway) -> DashboardFeed:
    """The gateway's one feed (kept in its ASGI app's state)."""
    feed: DashboardFeed = gw.api.state.feed
    return feed


async def test_tasks_pushes_a_new_task_and_its_end(gw: RunningGateway) -> None:
    async with gw.ws() as ws:
        client = Client(ws, gw.frames)
        await subscribed(client, "tasks")
        handle = await gw.app.defer("t.add", {"a": 2, "b": 5})

        def ended(content: dict[str, Any]) -> bool:
            return any(
                t["id"] == handle.id and t["status"] == "succeeded" for t in content["tasks"]
            )

        seen = await pushes_until(client, "tasks", ended)
        summaries = [t for content in seen for t in content["tasks"] if t["id"] == handle.id]
        first = summaries[0]
        assert first["taskType"] == "t.add" and first["queue"] == "default"
        assert set(first) >= {
            "id",
            "taskType",
            "queue",
            "status",
            "attempts",
            "maxAttempts",
            "createdAt",
        }
        assert "payload" not in first and "result" not in first  # summaries only
        assert summaries[-1]["status"] == "succeeded" and summaries[-1]["finishedAt"]


async def test_stats_pushes_the_overview(gw: RunningGateway) -> None:
    await (await gw.app.defer("t.add", {"a": 1, "b": 1})).result(timeout=10)
    async with gw.ws() as ws, gw.http() as http:
        client = Client(ws, gw.frames)
        await subscribed(client, "stats")
        [pushed] = await pushes_until(client, "stats", lambda content: True)
        assert set(pushed) == {"stats", "throughput", "openAlerts"}
        assert "finishedLastMinute" in pushed["stats"] and "nodesAlive" in pushed["stats"]
        assert sum(m["succeeded"] for m in pushed["throughput"]) == 1
        answered = (await http.get("/api/v1/dashboard/overview")).json()
        assert set(answered) == {"stats", "throughput", "openAlerts"}
        assert answered["throughput"] == pushed["throughput"]


async def test_database_reads_do_not_grow_with_dashboards(gw: RunningGateway) -> None:
    feed = feed_of(gw)
    beats_idle = feed.beats
    await asyncio.sleep(1.5)
    assert feed.beats == beats_idle, "nobody subscribed: no task-changes query"

    async def beats_during(connections: int, seconds: float) -> int:
        async with contextlib.AsyncExitStack() as stack:
            clients = []
            for _ in range(connections):
                ws = await stack.enter_async_context(gw.ws())
                clients.append(Client(ws, gw.frames))
            for client in clients:
                await subscribed(client, "tasks")
            start = feed.beats
            for _ in range(5):  # some activity: every dashboard would want to refresh
                await gw.app.defer("t.add", {"a": 1, "b": 2})
            await asyncio.sleep(seconds)
            return feed.beats - start

    one = await beats_during(1, 3.0)
    twenty = await beats_during(20, 3.0)
    # At most one read per quarter second, at least one per second, however many watch.
    assert 2 <= one <= 13 and 2 <= twenty <= 13, (one, twenty)
    assert abs(twenty - one) <= 4, (one, twenty)


async def test_an_unsubscribed_connection_gets_no_more_pushes(gw: RunningGateway) -> None:
    async with gw.ws() as ws:
        client = Client(ws, gw.frames)
        await subscribed(client, "tasks")
        await gw.app.defer("t.add", {"a": 1, "b": 2})
        await pushes_until(client, "tasks", lambda content: True)
        await client.send(
            {
                "type": "request",
                "requestId": "u",
                "action": "unsubscribe",
                "params": {"channel": "tasks"},
            }
        )
        assert await client.next() == {"type": "ack", "requestId": "u"}
        await client.until_final("u")
        await (await gw.app.defer("t.add", {"a": 3, "b": 4})).result(timeout=10)
        with pytest.raises(TimeoutError):
            while True:
                frame = await client.next(timeout=0.5)
                assert frame.get("channel") != "tasks", frame


async def test_the_overview_lists_the_firing_alerts_only(
    gw: RunningGateway, sql_conn: psycopg.Connection[Any]
) -> None:
    sql_conn.execute(
        "INSERT INTO tickbase.alerts (rule, state, value, message, resolved_at) VALUES"
        " ('backlog', 'firing', 150, '150 tasks waiting', NULL),"
        " ('failures-last-hour', 'resolved', 6, 'six failures', now())"
    )
    async with gw.http(gw.viewer) as http:
        overview = (await http.get("/api/v1/dashboard/overview")).json()
    [alert] = overview["openAlerts"]
    assert (alert["rule"], alert["state"], alert["message"]) == (
        "backlog",
        "firing",
        "150 tasks waiting",
    )
    assert "firedAt" in alert
