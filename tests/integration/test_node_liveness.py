"""A live node is never declared dead: not by a starved pool, not by killed backends.

Each test runs a leader of its own (another pool, as another process would
have) that runs real housekeeping passes, node-down alerts included, with the
node's short heartbeat interval as the dead threshold's unit (three of them).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool, PoolTimeout

import tickbase
from tests.conftest import fast_settings
from tests.support.waiting import wait_until
from tickbase.cluster.alerts import evaluate_alerts
from tickbase.cluster.election import LeaderElection
from tickbase.cluster.housekeeping import Housekeeper, PassReport
from tickbase.cluster.lease import Lease
from tickbase.cluster.nodes import NodeHeartbeat
from tickbase.db.pool import AsyncConn, create_pool
from tickbase.queue.repository import TaskQueue

INTERVAL = 0.3  # seconds: silent for 0.9 s, a node is dead


@dataclass
class Leader:
    """Housekeeping passes of a leader node with its own pool, recorded."""

    keeper: Housekeeper
    reports: list[PassReport] = field(default_factory=list)

    async def passes_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            report = await self.keeper.run_once()
            assert report is not None
            self.reports.append(report)
            await asyncio.sleep(INTERVAL / 3)

    @property
    def dead_nodes(self) -> list[str]:
        return [node for report in self.reports for node in report.dead_nodes]

    @property
    def rescued(self) -> list[tuple[int, str]]:
        return [task for report in self.reports for task in report.rescued]


@pytest.fixture
async def leader(database_url: str) -> AsyncIterator[Leader]:
    pool = create_pool(database_url, max_size=2, name="leader")
    await pool.open(wait=True)
    try:
        lease = Lease(pool, holder="leader", ttl=30)
        assert await lease.acquire()
        yield Leader(
            Housekeeper(
                pool,
                LeaderElection(pool, lease=lease),
                node_id="leader",
                steps=[("alerts", _alerts)],
            )
        )
    finally:
        await pool.close()


async def _alerts(conn: AsyncConn) -> None:
    await evaluate_alerts(conn)


def node_down_alerts(sql_conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return sql_conn.execute(
        "SELECT subject, state FROM tickbase.alerts WHERE rule = 'node-down'"
    ).fetchall()


def heartbeat_at(sql_conn: psycopg.Connection[Any], node_id: str) -> Any:
    row = sql_conn.execute(
        "SELECT heartbeat_at FROM tickbase.nodes WHERE node_id = %s", (node_id,)
    ).fetchone()
    return None if row is None else row[0]


@contextlib.asynccontextmanager
async def held(pool: AsyncConnectionPool[AsyncConn], n: int) -> AsyncIterator[None]:
    """Every connection of ``pool`` checked out, as slow request handling would."""
    conns = [await pool.getconn(timeout=5) for _ in range(n)]
    try:
        yield
    finally:
        for conn in conns:
            await pool.putconn(conn)


async def test_heartbeat_keeps_beating_while_the_pool_is_starved(
    database_url: str, sql_conn: psycopg.Connection[Any], leader: Leader
) -> None:
    """Old code: the heartbeat waited for a pooled connection (pool timeout 30 s),
    so the leader reaped the node 0.9 s into the starvation and alerted."""
    app = tickbase.App(settings=fast_settings(database_url, pool_max_size=2))
    await app.open(apply_migrations=False)
    assert app.url is not None
    beat = NodeHeartbeat(app.url, "gateway-1", roles=["api"], interval=INTERVAL)
    beating = asyncio.create_task(beat.run())
    try:
        await wait_until(
            lambda: asyncio.sleep(0, heartbeat_at(sql_conn, "gateway-1")),
            timeout=5,
            message="registration",
        )
        async with held(app.pool, 2):
            with pytest.raises(PoolTimeout):
                await app.pool.getconn(timeout=0.1)  # truly starved
            seen = [heartbeat_at(sql_conn, "gateway-1")]
            for _ in range(4):  # 4 x 0.9 s: four dead thresholds
                await leader.passes_for(3 * INTERVAL)
                seen.append(heartbeat_at(sql_conn, "gateway-1"))
        assert None not in seen and seen == sorted(set(seen)), seen  # advanced every time
        assert leader.dead_nodes == [] and len(leader.reports) >= 8
        assert node_down_alerts(sql_conn) == []
        assert sql_conn.execute("SELECT count(*) FROM tickbase.lost_nodes").fetchone() == (0,)
        assert beat.failures == 0 and beat.reregistrations == 0
    finally:
        beat.request_stop()
        await asyncio.wait_for(beating, 5)
        await app.close()
    assert heartbeat_at(sql_conn, "gateway-1") is None  # deregistered on the way out


async def test_heartbeat_reconnects_through_repeated_backend_kills_under_load(
    database_url: str, sql_conn: psycopg.Connection[Any], leader: Leader
) -> None:
    """The heartbeat's own backend is terminated every 0.25 s while a worker runs
    tasks: it reconnects each time; no node_down, no task rescued from the live
    worker, every task run exactly once.

    Old code: there is no heartbeat connection to kill (it borrowed from the
    pool), so the kill count assertion fails; the pool's behaviour under kills
    is test_gateway_identity's subject."""
    app = tickbase.App(settings=fast_settings(database_url, heartbeat_seconds=INTERVAL))
    runs: list[int] = []

    @app.task(retries=0)
    async def busy(n: int) -> int:
        await asyncio.sleep(0.4)
        runs.append(n)
        return n

    stop = asyncio.Event()
    async with app:
        handles = await busy.defer_many([{"n": n} for n in range(24)])
        running = asyncio.create_task(app.run(scheduler=False, concurrency=4, stop=stop))
        application_name = f"tickbase-heartbeat:{app.node_id}"
        try:
            await wait_until(
                lambda: asyncio.sleep(0, heartbeat_at(sql_conn, app.node_id)),
                timeout=5,
                message="registration",
            )
            killed: set[int] = set()

            async def kill_heartbeat_backends() -> None:
                with psycopg.connect(database_url, autocommit=True) as killer:
                    deadline = time.monotonic() + 3.0
                    while time.monotonic() < deadline:
                        rows = killer.execute(
                            "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity"
                            " WHERE application_name = %s",
                            (application_name,),
                        ).fetchall()
                        killed.update(pid for pid, done in rows if done)
                        await asyncio.sleep(0.25)

            await asyncio.gather(kill_heartbeat_backends(), leader.passes_for(3.5))
            assert len(killed) >= 5, killed  # a new backend each time: it reconnected
            await wait_until(
                lambda: asyncio.sleep(0, len(runs) == len(handles)),
                timeout=20,
                message="every task run",
            )
            assert [await h.result(timeout=5) for h in handles] == list(range(24))
            await leader.passes_for(3 * INTERVAL)  # the node is still alive now
        finally:
            stop.set()
            await asyncio.wait_for(running, 15)
    assert leader.dead_nodes == [] and leader.rescued == []
    assert sorted(runs) == list(range(24))  # each once
    assert node_down_alerts(sql_conn) == []
    assert sql_conn.execute(
        "SELECT count(*) FROM tickbase.task_events WHERE event = 'rescued'"
    ).fetchone() == (0,)


async def test_a_removed_node_registers_again_and_its_tasks_complete(
    database_url: str, sql_conn: psycopg.Connection[Any], leader: Leader
) -> None:
    """The node's row is deleted while it runs a task: its next beat registers it
    again, the task keeps running (nothing rescued it) and completes normally.
    (Old code re-registered too: this guards the fallback.)"""
    app = tickbase.App(settings=fast_settings(database_url, heartbeat_seconds=INTERVAL))
    release = asyncio.Event()

    @app.task(retries=0)
    async def waits() -> str:
        await release.wait()
        return "done"

    stop = asyncio.Event()
    async with app:
        handle = await waits.defer()
        running = asyncio.create_task(app.run(scheduler=False, stop=stop))
        try:

            async def is_running() -> bool:
                return (await handle.get()).status is tickbase.TaskStatus.RUNNING

            await wait_until(is_running, timeout=10, message="the task running")
            await wait_until(
                lambda: asyncio.sleep(0, heartbeat_at(sql_conn, app.node_id)),
                timeout=5,
                message="registration",
            )
            sql_conn.execute("DELETE FROM tickbase.nodes WHERE node_id = %s", (app.node_id,))
            await wait_until(
                lambda: asyncio.sleep(0, heartbeat_at(sql_conn, app.node_id)),
                timeout=5,
                message="registration again",
            )
            await leader.passes_for(4 * INTERVAL)
            assert (await handle.get()).status is tickbase.TaskStatus.RUNNING
            release.set()
            assert await handle.result(timeout=10) == "done"
        finally:
            stop.set()
            await asyncio.wait_for(running, 15)
        events = [e.event for e in await app.queue.events(handle.id)]
    assert leader.dead_nodes == [] and leader.rescued == []
    assert events == ["started", "succeeded"]
    assert node_down_alerts(sql_conn) == []


async def test_a_live_node_reaped_anyway_loses_its_run_cleanly(
    database_url: str, sql_conn: psycopg.Connection[Any], leader: Leader
) -> None:
    """Should a live node be reaped all the same (here: its heartbeat is set back
    a minute just before a pass), its task is rescued; the node registers again,
    its worker stops the rescued run at its next lease renewal, and the task runs
    again and succeeds once: no double completion, no corrupted row."""
    app = tickbase.App(settings=fast_settings(database_url, heartbeat_seconds=INTERVAL))
    release = asyncio.Event()
    finished: list[int] = []

    @app.task(retries=1)
    async def waits() -> str:
        await release.wait()
        finished.append(1)
        return "done"

    stop = asyncio.Event()
    async with app:
        handle = await waits.defer()
        running = asyncio.create_task(app.run(scheduler=False, stop=stop))
        try:

            async def is_running() -> bool:
                return (await handle.get()).status is tickbase.TaskStatus.RUNNING

            await wait_until(is_running, timeout=10, message="the task running")
            # The node's own beat may land between the two statements, and its
            # lease renewal may hold the task's row just then (the rescue skips
            # a locked row; the node re-registers and is reaped again).
            for _ in range(40):
                sql_conn.execute(
                    "UPDATE tickbase.nodes SET heartbeat_at = now() - interval '1 minute'"
                    " WHERE node_id = %s",
                    (app.node_id,),
                )
                report = await leader.keeper.run_once()
                assert report is not None
                if report.dead_nodes == [app.node_id] and report.rescued:
                    break
                await asyncio.sleep(INTERVAL / 4)
            assert report.rescued == [(handle.id, "retrying")]
            await wait_until(
                lambda: asyncio.sleep(0, heartbeat_at(sql_conn, app.node_id)),
                timeout=5,
                message="registration again",
            )

            async def second_attempt_running() -> bool:
                task = await handle.get()
                return task.attempts == 2 and task.status is tickbase.TaskStatus.RUNNING

            await wait_until(second_attempt_running, timeout=10, message="the second run")
            release.set()
            assert await handle.result(timeout=10) == "done"
        finally:
            stop.set()
            await asyncio.wait_for(running, 15)
        events = [e.event for e in await app.queue.events(handle.id)]
    assert finished == [1]  # the rescued run was stopped, not completed
    assert events == ["started", "rescued", "retrying", "started", "succeeded"]


async def test_leases_are_renewed_while_the_shared_pool_is_starved(
    database_url: str, sql_conn: psycopg.Connection[Any]
) -> None:
    """Old code: the worker renewed its leases through the shared pool, so a
    gateway holding every shared connection for longer than a lease had the
    running task rescued (and run again) by another node."""
    app = tickbase.App(settings=fast_settings(database_url, pool_max_size=2, lease_seconds=1.5))
    runs: list[int] = []

    @app.task(name="t.long")
    async def long() -> str:
        runs.append(1)
        await asyncio.sleep(4)
        return "done"

    rescuer_pool = create_pool(database_url, max_size=1, name="rescuer")
    await rescuer_pool.open(wait=True)
    rescued: list[tuple[int, str]] = []
    async with app:
        worker = app.worker(concurrency=2)
        working = asyncio.create_task(worker.run())
        try:
            await asyncio.wait_for(worker.started.wait(), 10)
            handle = await app.defer("t.long")
            await wait_until(
                lambda: asyncio.sleep(0, bool(runs)), timeout=10, message="the task to start"
            )
            rescuer = TaskQueue(rescuer_pool)
            async with held(app.pool, 2):
                deadline = time.monotonic() + 3.5  # over two leases of 1.5 s
                while time.monotonic() < deadline:
                    rescued += await rescuer.rescue(node_id="rescuer")
                    await asyncio.sleep(0.2)
            result = await handle.result(timeout=10)
        finally:
            worker.request_stop()
            await asyncio.wait_for(working, 15)
            await rescuer_pool.close()
    assert rescued == [] and runs == [1] and result == "done"
    (attempt,) = sql_conn.execute(
        "SELECT attempts FROM tickbase.tasks WHERE id = %s", (handle.id,)
    ).fetchone() or (None,)
    assert attempt == 1
