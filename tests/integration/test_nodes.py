"""Nodes register, heartbeat with metrics, deregister; dead nodes are reaped with their tasks."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg

import tickbase
from tests.support.waiting import wait_until
from tickbase.cluster.nodes import NodeHeartbeat, list_nodes


async def nodes(app: tickbase.App) -> list[dict[str, Any]]:
    async with app.pool.connection() as conn:
        return await list_nodes(conn)


async def test_register_heartbeat_deregister(app: tickbase.App) -> None:
    beat = NodeHeartbeat(
        app.pool, "node-a", roles=["worker"], queues=["q1"], interval=0.2, running=lambda: 7
    )
    task = asyncio.create_task(beat.run())

    async def registered() -> bool:
        found = await nodes(app)
        return bool(found) and found[0]["metrics"].get("running_tasks") == 7

    await wait_until(registered, timeout=5, message="the node's heartbeat")
    [node] = await nodes(app)
    assert node["roles"] == ["worker"] and node["queues"] == ["q1"] and node["alive"] is True
    assert node["metrics"]["rss_bytes"] > 0 and "cpu_percent" in node["metrics"]
    beat.stop()
    await asyncio.wait_for(task, 5)
    assert await nodes(app) == []  # a clean shutdown leaves at once


async def test_dead_node_is_reaped_and_its_tasks_rescued(
    app: tickbase.App, sql_conn: psycopg.Connection[Any]
) -> None:
    handles = await app.enqueue_many(
        [tickbase.EnqueueRequest("t", max_attempts=2), tickbase.EnqueueRequest("t", max_attempts=1)]
    )
    async with app.pool.connection() as conn:
        await app.queue.claim(conn, node_id="ghost", limit=10, queues=None, lease_seconds=600)
    # a node that heartbeated once, long ago (its lease would only expire in 10 minutes)
    sql_conn.execute(
        "INSERT INTO tickbase.nodes (node_id, host, pid, version, heartbeat_interval, heartbeat_at)"
        " VALUES ('ghost', 'h', 1, 'x', 1, now() - interval '1 minute')"
    )
    beat = NodeHeartbeat(app.pool, "live", roles=["worker"], interval=0.2)
    task = asyncio.create_task(beat.run())
    try:

        async def rescued() -> bool:
            return beat.rescued_tasks == 2

        await wait_until(rescued, timeout=5, message="the dead node's tasks rescued")
    finally:
        beat.stop()
        await asyncio.wait_for(task, 5)
    first, second = await app.queue.get(handles[0].id), await app.queue.get(handles[1].id)
    assert (
        first.status is tickbase.TaskStatus.RETRYING and second.status is tickbase.TaskStatus.FAILED
    )
    assert second.error is not None and second.error["type"] == "NodeDead"
    assert [n["node_id"] for n in await nodes(app)] == []
