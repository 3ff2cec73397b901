"""App.run composes the node: it registers with its roles, ends with the failure
of a role that fails, and on stop leaves the cluster last (after its worker)."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest

import tickbase
from tests.conftest import fast_settings
from tests.support.waiting import wait_until
from tickbase.cluster.lease import LEADER_LEASE
from tickbase.service import Service

STOPPED_WITHIN = 15.0  # seconds


def node_row(sql_conn: psycopg.Connection[Any], node_id: str) -> tuple[Any, ...] | None:
    return sql_conn.execute(
        "SELECT roles, queues FROM tickbase.nodes WHERE node_id = %s", (node_id,)
    ).fetchone()


def leader_lease(sql_conn: psycopg.Connection[Any]) -> tuple[Any, ...] | None:
    return sql_conn.execute(
        "SELECT holder, expires_at > clock_timestamp() FROM tickbase.leases WHERE name = %s",
        (LEADER_LEASE,),
    ).fetchone()


async def test_the_node_registers_with_its_roles_and_leaves_on_stop(
    database_url: str, sql_conn: psycopg.Connection[Any]
) -> None:
    app = tickbase.App(settings=fast_settings(database_url))
    stop = asyncio.Event()
    async with app:
        running = asyncio.create_task(app.run(queues=["q1", "q2"], stop=stop, other_roles=["api"]))
        try:
            row = await wait_until(
                lambda: asyncio.sleep(0, node_row(sql_conn, app.node_id)),
                timeout=15,
                message="registration",
            )
            assert row == (["api", "worker", "scheduler"], ["q1", "q2"])
            # The scheduler role makes it a candidate: alone, it leads.
            await wait_until(
                lambda: asyncio.sleep(0, leader_lease(sql_conn) == (app.node_id, True)),
                timeout=15,
                message="the node leading",
            )
            assert not running.done()
        finally:
            stop.set()
            await asyncio.wait_for(running, STOPPED_WITHIN)
        assert node_row(sql_conn, app.node_id) is None  # deregistered
        assert leader_lease(sql_conn) == (app.node_id, False)  # given up


async def test_a_worker_only_node_registers_as_worker(
    database_url: str, sql_conn: psycopg.Connection[Any]
) -> None:
    app = tickbase.App(settings=fast_settings(database_url))
    stop = asyncio.Event()
    async with app:
        running = asyncio.create_task(app.run(scheduler=False, stop=stop))
        try:
            row = await wait_until(
                lambda: asyncio.sleep(0, node_row(sql_conn, app.node_id)),
                timeout=15,
                message="registration",
            )
            assert row == (["worker"], None)
        finally:
            stop.set()
            await asyncio.wait_for(running, STOPPED_WITHIN)
    assert leader_lease(sql_conn) is None  # never a candidate


class Failing(Service):
    """A role that is up, then fails once ``fail_now`` is set (or at once, before it is up)."""

    name = "failing"

    def __init__(self, error: Exception, *, before_up: bool = False) -> None:
        super().__init__()
        self.error = error
        self.before_up = before_up
        self.fail_now = asyncio.Event()

    async def serve(self) -> None:
        if self.before_up:
            raise self.error
        self.mark_started()
        await self.fail_now.wait()
        raise self.error


async def test_a_role_that_fails_ends_run_with_its_failure(
    database_url: str, sql_conn: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    app = tickbase.App(settings=fast_settings(database_url))
    error = RuntimeError("the ticker broke")
    failing = Failing(error)
    monkeypatch.setattr(app, "ticker", lambda election=None: failing)
    stop = asyncio.Event()  # never set: the failure alone ends the run
    async with app:
        running = asyncio.create_task(app.run(stop=stop))
        # The heartbeat is up before its first beat lands: wait for both.
        await wait_until(
            lambda: asyncio.sleep(
                0,
                leader_lease(sql_conn) == (app.node_id, True)
                and node_row(sql_conn, app.node_id) is not None,
            ),
            timeout=15,
            message="the node registered and leading",
        )
        assert not running.done()
        failing.fail_now.set()
        with pytest.raises(RuntimeError, match="the ticker broke") as raised:
            await asyncio.wait_for(running, STOPPED_WITHIN)
        assert raised.value is error
        # The other roles were stopped on the way out.
        assert node_row(sql_conn, app.node_id) is None
        assert leader_lease(sql_conn) == (app.node_id, False)


async def test_a_role_that_cannot_start_ends_run_and_stops_the_others(
    database_url: str, sql_conn: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    app = tickbase.App(settings=fast_settings(database_url))
    error = ConnectionError("the housekeeper cannot start")
    monkeypatch.setattr(
        app, "housekeeper", lambda election, notifier=None: Failing(error, before_up=True)
    )
    async with app:
        with pytest.raises(ConnectionError, match="cannot start") as raised:
            await asyncio.wait_for(app.run(stop=asyncio.Event()), STOPPED_WITHIN)
        assert raised.value is error
        # The heartbeat (started first) registered, and was stopped: deregistered.
        registered = sql_conn.execute(
            "SELECT count(*) FROM tickbase.nodes WHERE node_id = %s", (app.node_id,)
        ).fetchone()
        assert registered == (0,)


ORDER_LOG = """
CREATE TABLE public.shutdown_log (seq bigserial PRIMARY KEY, what text NOT NULL);
CREATE FUNCTION public.log_task_left_running() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
    INSERT INTO public.shutdown_log (what) VALUES (
        'task ' || OLD.status || '->' || NEW.status
        || CASE WHEN EXISTS (SELECT FROM tickbase.nodes n WHERE n.node_id = OLD.node_id)
                THEN ' (node row present)' ELSE ' (node row gone)' END);
    RETURN NULL;
END $$;
CREATE TRIGGER log_task_left_running AFTER UPDATE ON tickbase.tasks
    FOR EACH ROW WHEN (OLD.status = 'running' AND NEW.status <> 'running')
    EXECUTE FUNCTION public.log_task_left_running();
CREATE FUNCTION public.log_lease_given_up() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
    INSERT INTO public.shutdown_log (what) VALUES ('lease given up');
    RETURN NULL;
END $$;
CREATE TRIGGER log_lease_given_up AFTER UPDATE ON tickbase.leases
    FOR EACH ROW WHEN (NEW.expires_at < OLD.expires_at)
    EXECUTE FUNCTION public.log_lease_given_up();
CREATE FUNCTION public.log_node_left() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
    INSERT INTO public.shutdown_log (what) VALUES ('node row deleted');
    RETURN NULL;
END $$;
CREATE TRIGGER log_node_left AFTER DELETE ON tickbase.nodes
    FOR EACH ROW EXECUTE FUNCTION public.log_node_left();
"""


async def test_on_stop_the_roles_stop_in_reverse_and_the_node_leaves_last(
    database_url: str, sql_conn: psycopg.Connection[Any]
) -> None:
    """A task still running at shutdown is re-queued while the node row still
    exists; the node row goes last. The database records the order itself
    (triggers writing to a log with a sequence), so no timing is guessed."""
    sql_conn.execute(ORDER_LOG)
    app = tickbase.App(settings=fast_settings(database_url, shutdown_grace=0.3))
    started = asyncio.Event()

    @app.task(retries=0)
    async def endless() -> None:
        started.set()
        await asyncio.Event().wait()  # only the shutdown ends it

    stop = asyncio.Event()
    async with app:
        handle = await endless.defer()
        running = asyncio.create_task(app.run(stop=stop))
        try:
            await asyncio.wait_for(started.wait(), 10)
            await wait_until(
                lambda: asyncio.sleep(0, leader_lease(sql_conn) == (app.node_id, True)),
                timeout=15,
                message="the node leading",
            )
        finally:
            stop.set()
            await asyncio.wait_for(running, STOPPED_WITHIN)
        task = await handle.get()
    assert task.status is tickbase.TaskStatus.PENDING and task.attempts == 0  # re-queued
    log = [what for (what,) in sql_conn.execute("SELECT what FROM shutdown_log ORDER BY seq")]
    # In reverse of the start order: the election (lease), the worker (task), the heartbeat.
    assert log == [
        "lease given up",
        "task running->pending (node row present)",
        "node row deleted",
    ]


async def test_node_reports_registered_while_running_reach_the_heartbeat(
    database_url: str, sql_conn: psycopg.Connection[Any], caplog: pytest.LogCaptureFixture
) -> None:
    # What `tickbase up` does for its real-time pipeline: a report added after the
    # node started is in the next beat's metrics; one that raises is left out.
    app = tickbase.App(settings=fast_settings(database_url))
    stop = asyncio.Event()

    def metrics() -> dict[str, Any]:
        row = sql_conn.execute(
            "SELECT metrics FROM tickbase.nodes WHERE node_id = %s", (app.node_id,)
        ).fetchone()
        return row[0] if row else {}

    def broken() -> object:
        raise RuntimeError("report failed on purpose")

    async with app:
        running = asyncio.create_task(app.run(worker=False, scheduler=False, stop=stop))
        try:
            await wait_until(lambda: asyncio.sleep(0, metrics()), timeout=15, message="a beat")
            app.node_reports["broken"] = broken
            app.node_reports["realtime"] = lambda: {"circuits_open": ["shard-0"]}
            found = await wait_until(
                lambda: asyncio.sleep(0, metrics().get("realtime")), timeout=15, message="report"
            )
            assert found == {"circuits_open": ["shard-0"]}
            assert "broken" not in metrics() and "running_tasks" in metrics()
            assert "node heartbeat report broken failed" in caplog.text
        finally:
            stop.set()
            await asyncio.wait_for(running, STOPPED_WITHIN)
