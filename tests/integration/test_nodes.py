"""Nodes register, heartbeat with metrics, deregister; dead nodes are reaped with their tasks."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest

import tickbase
from tests.support.waiting import wait_until
from tickbase.cluster.election import LeaderElection
from tickbase.cluster.housekeeping import Housekeeper
from tickbase.cluster.lease import Lease, lease_holder
from tickbase.cluster.nodes import NodeHeartbeat, list_nodes


async def nodes(app: tickbase.App) -> list[dict[str, Any]]:
    async with app.pool.connection() as conn:
        return await list_nodes(conn)


async def test_register_heartbeat_deregister(app: tickbase.App) -> None:
    assert app.url is not None
    beat = NodeHeartbeat(
        app.url, "node-a", roles=["worker"], queues=["q1"], interval=0.2, running=lambda: 7
    )
    task = asyncio.create_task(beat.run())

    async def registered() -> bool:
        found = await nodes(app)
        return bool(found) and found[0]["metrics"].get("running_tasks") == 7

    await wait_until(registered, timeout=5, message="the node's heartbeat")
    [node] = await nodes(app)
    assert node["roles"] == ["worker"] and node["queues"] == ["q1"] and node["alive"] is True
    assert node["metrics"]["rss_bytes"] > 0 and "cpu_percent" in node["metrics"]
    beat.request_stop()
    await asyncio.wait_for(task, 5)
    assert await nodes(app) == []  # a clean shutdown leaves at once


async def claimed_by_dead_node(app: tickbase.App, sql_conn: psycopg.Connection[Any]) -> None:
    """Every waiting task claimed by 'ghost': a node that heartbeated once, long
    ago (the tasks' leases would only expire in 10 minutes)."""
    async with app.pool.connection() as conn:
        await app.queue.claim(conn, node_id="ghost", limit=10, queues=None, lease_seconds=600)
    sql_conn.execute(
        "INSERT INTO tickbase.nodes (node_id, host, pid, version, heartbeat_interval, heartbeat_at)"
        " VALUES ('ghost', 'h', 1, 'x', 1, now() - interval '1 minute')"
    )


async def test_leader_reaps_dead_node_and_rescues_its_tasks(
    app: tickbase.App, sql_conn: psycopg.Connection[Any]
) -> None:
    handles = await app.enqueue_many(
        [tickbase.EnqueueRequest("t", max_attempts=2), tickbase.EnqueueRequest("t", max_attempts=1)]
    )
    await claimed_by_dead_node(app, sql_conn)
    lease = Lease(app.pool, holder="live", ttl=10)
    keeper = Housekeeper(app.pool, LeaderElection(app.pool, lease=lease), node_id="live")
    assert await keeper.run_once() is None  # not the leader: does nothing
    assert [n["node_id"] for n in await nodes(app)] == ["ghost"]
    assert await lease.acquire()
    report = await keeper.run_once()
    assert report is not None
    assert report.dead_nodes == ["ghost"] and len(report.rescued) == 2
    first, second = await app.queue.get(handles[0].id), await app.queue.get(handles[1].id)
    assert (
        first.status is tickbase.TaskStatus.RETRYING and second.status is tickbase.TaskStatus.FAILED
    )
    assert second.error is not None and second.error["type"] == "NodeDead"
    assert [n["node_id"] for n in await nodes(app)] == []


async def test_deposed_leader_writes_nothing(
    app: tickbase.App, sql_conn: psycopg.Connection[Any]
) -> None:
    await app.enqueue_many([tickbase.EnqueueRequest("t", max_attempts=2)])
    await claimed_by_dead_node(app, sql_conn)
    old = Lease(app.pool, holder="old", ttl=10)
    assert await old.acquire()
    stale_token = old.token
    async with app.pool.connection() as conn:
        holder = await lease_holder(conn)
    assert holder is not None
    expires: datetime = holder["expires_at"]
    # The old leader "pauses" past its lease: the new node acts at its expiry,
    # not a microsecond earlier (no sleeping until then).
    new = Lease(app.pool, holder="new", ttl=10)
    assert not await new.acquire(now=expires - timedelta(microseconds=1))
    assert new.others_expire_in == pytest.approx(1e-6)
    assert await new.acquire(now=expires) and new.token == (stale_token or 0) + 1
    # The old leader wakes believing it still leads (as a paused process would).
    old.token = stale_token
    old._valid_until = float("inf")
    keeper = Housekeeper(app.pool, LeaderElection(app.pool, lease=old), node_id="old")
    assert await keeper.run_once() is None
    assert old.token is None  # it stood down
    assert [n["node_id"] for n in await nodes(app)] == ["ghost"]  # nothing reaped
    assert sql_conn.execute("SELECT status FROM tickbase.tasks").fetchone() == ("running",)
    assert (
        await Housekeeper(app.pool, LeaderElection(app.pool, lease=new), node_id="new").run_once()
    ) is not None
    assert sql_conn.execute("SELECT status FROM tickbase.tasks").fetchone() == ("retrying",)


async def test_workers_rescue_expired_leases_only_without_a_leader(
    app: tickbase.App, sql_conn: psycopg.Connection[Any]
) -> None:
    await app.enqueue_many([tickbase.EnqueueRequest("t", max_attempts=2)])
    async with app.pool.connection() as conn:
        await app.queue.claim(conn, node_id="gone", limit=10, queues=None, lease_seconds=60)
    row = sql_conn.execute("SELECT lease_expires_at FROM tickbase.tasks").fetchone()
    assert row is not None
    expires: datetime = row[0]
    later = expires + timedelta(milliseconds=1)  # the task's lease has run out by then
    lease = Lease(app.pool, holder="leader", ttl=120)
    assert await lease.acquire()
    assert await app.queue.rescue(unless_leader=True, now=later) == []  # the leader's job
    await lease.release()
    assert await app.queue.rescue(unless_leader=True, now=expires) == []  # not yet expired
    assert await lease.acquire()
    leader_row = sql_conn.execute(
        "SELECT expires_at FROM tickbase.leases WHERE name = 'leader'"
    ).fetchone()
    assert leader_row is not None
    # Both leases are judged at one instant: as of the leader's expiry the
    # leader is dead too, so the worker's fallback acts.
    [(_, status)] = await app.queue.rescue(unless_leader=True, now=leader_row[0])
    assert status == "retrying"


async def test_rescue_writes_the_events_a_failure_writes(
    app: tickbase.App, sql_conn: psycopg.Connection[Any]
) -> None:
    """A task failed (or retried) by a rescue has the same event as one failed by
    its worker: ``failed`` / ``retrying`` with the error, on the node that ran it;
    a cancel-requested one ends ``cancelled``. The ``rescued`` event says who rescued it."""
    retried, failed, cancelled = await app.enqueue_many(
        [
            tickbase.EnqueueRequest("t", max_attempts=2),
            tickbase.EnqueueRequest("t", max_attempts=1),
            tickbase.EnqueueRequest("t", max_attempts=3),
        ]
    )
    await claimed_by_dead_node(app, sql_conn)
    await app.queue.cancel(cancelled.id)
    lease = Lease(app.pool, holder="live", ttl=10)
    assert await lease.acquire()
    report = await Housekeeper(
        app.pool, LeaderElection(app.pool, lease=lease), node_id="live"
    ).run_once()
    assert report is not None and len(report.rescued) == 3

    async def history(task_id: int) -> list[tuple[str, str | None]]:
        return [
            (e.event, e.node_id)
            for e in await app.queue.events(task_id)
            if e.event not in {"started", "cancel_requested"}
        ]

    assert await history(retried.id) == [("rescued", "live"), ("retrying", "ghost")]
    assert await history(failed.id) == [("rescued", "live"), ("failed", "ghost")]
    assert await history(cancelled.id) == [("rescued", "live"), ("cancelled", "ghost")]
    [failed_event] = [e for e in await app.queue.events(failed.id) if e.event == "failed"]
    task = await app.queue.get(failed.id)
    assert failed_event.detail == task.error and failed_event.detail["type"] == "NodeDead"
    # Counted like any other failure by whoever counts 'failed' events.
    assert sql_conn.execute(
        "SELECT count(*) FROM tickbase.task_events WHERE event = 'failed'"
    ).fetchone() == (1,)
