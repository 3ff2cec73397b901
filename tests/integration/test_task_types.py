"""Workers claim only the task types they handle; the rest wait, shown and alerted."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import psycopg

import tickbase
from tests.conftest import fast_settings
from tests.e2e.conftest import run_cli
from tests.support.gateway import gateway_test_app, running_gateway
from tests.support.waiting import wait_until
from tickbase.cluster.alerts import evaluate_alerts
from tickbase.cluster.nodes import known_task_types, waiting_reason


def app_with(database_url: str, *names: str) -> tickbase.App:
    """An App whose only own task types are ``names`` (each returns its name)."""
    app = tickbase.App(settings=fast_settings(database_url))
    for name in names:

        async def handler(name: str = name) -> str:
            return name

        app.task(name=name)(handler)
    return app


@contextlib.asynccontextmanager
async def node(app: tickbase.App) -> AsyncIterator[None]:
    """``app`` running as a worker node (registered in tickbase.nodes) until the block ends."""
    stop = asyncio.Event()
    running = asyncio.create_task(app.run(scheduler=False, stop=stop))

    async def registered() -> bool:
        async with app.pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT task_types FROM tickbase.nodes WHERE node_id = %s", (app.node_id,)
            )
            row = await cursor.fetchone()
        return row is not None and row[0] is not None

    await wait_until(registered, timeout=10)
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(running, 15)


def status(sql_conn: psycopg.Connection[Any], task_id: int) -> str:
    row = sql_conn.execute("SELECT status FROM tickbase.tasks WHERE id = %s", (task_id,)).fetchone()
    assert row is not None
    return str(row[0])


async def test_unhandled_type_waits_pending_and_runs_when_its_worker_starts(
    database_url: str, sql_conn: psycopg.Connection[Any]
) -> None:
    a_app, b_app = app_with(database_url, "t.a"), app_with(database_url, "t.b")
    async with a_app, b_app:
        async with node(a_app):
            b = await a_app.defer("t.b", {})
            a = await a_app.defer("t.a", {})
            assert await a.result(timeout=10) == "t.a"  # the A worker is up and claiming
            await asyncio.sleep(0.5)  # several claims and polls later ...
            assert status(sql_conn, b.id) == "pending"  # ... B was never claimed, never failed
            async with a_app.pool.connection() as conn:
                known = await known_task_types(conn)
                assert known["t.a"]["handled"] and "t.b" not in known
                assert await waiting_reason(conn, "t.a", "other") is None  # it serves all queues
                assert await waiting_reason(conn, "t.b", "default") == (
                    "no live worker handles type t.b"
                )
            shown = await asyncio.to_thread(
                run_cli, "tasks", "show", str(b.id), "--json", database_url=database_url
            )
            assert json.loads(shown.stdout)["waiting"] == "no live worker handles type t.b"
            async with node(b_app):
                assert await b.result(timeout=10) == "t.b"
        row = sql_conn.execute(
            "SELECT attempts, node_id FROM tickbase.tasks WHERE id = %s", (b.id,)
        ).fetchone()
        assert row == (1, b_app.node_id)  # one attempt, by the worker that has the handler


async def test_alert_names_the_type_no_worker_handles(
    database_url: str, sql_conn: psycopg.Connection[Any]
) -> None:
    sql_conn.execute(
        "UPDATE tickbase.alert_rules SET for_seconds = 0 WHERE name = 'no-worker-for-type'"
    )
    a_app, b_app = app_with(database_url, "t.a"), app_with(database_url, "t.b")
    async with a_app, b_app, node(a_app):
        await a_app.defer("t.b", {})
        await a_app.defer("t.b", {}, queue="other")
        async with a_app.pool.connection() as conn, conn.transaction():
            changes = await evaluate_alerts(conn, kinds={"no_worker_for_type"})
        [fired] = changes
        assert (fired.event, fired.rule, fired.subject) == (
            "fired",
            "no-worker-for-type",
            "t.b",
        )
        assert "t.b" in fired.message and fired.value == 2
        assert fired.detail["task_type"] == "t.b" and fired.detail["waiting"] == 2
        stats = await asyncio.to_thread(_stats, database_url)
        assert stats["no_worker"] == 2
        assert stats["no_worker_by_type"] == [
            {"task_type": "t.b", "queue": "default", "count": 1},
            {"task_type": "t.b", "queue": "other", "count": 1},
        ]
        async with node(b_app):
            async with a_app.pool.connection() as conn, conn.transaction():
                [resolved] = await evaluate_alerts(conn, kinds={"no_worker_for_type"})
            assert (resolved.event, resolved.subject) == ("resolved", "t.b")


def _stats(url: str) -> dict[str, Any]:
    from tickbase.cluster.metrics import read_stats_at

    return read_stats_at(url)


async def test_gateway_accepts_a_type_only_a_live_node_handles(database_url: str) -> None:
    gateway_app = gateway_test_app(database_url)
    other = app_with(database_url, "elsewhere.collect_klines")
    async with (
        gateway_app,
        other,
        running_gateway(gateway_app, worker=False) as gw,
        gw.http() as http,
    ):
        refused = await http.post("/api/v1/tasks", json={"taskType": "elsewhere.collect_klines"})
        assert refused.status_code == 422, refused.text
        async with node(other):
            accepted = await http.post(
                "/api/v1/tasks", json={"taskType": "elsewhere.collect_klines"}
            )
            assert accepted.status_code == 201, accepted.text
            handle = other.handle(accepted.json()["id"])
            assert await handle.result(timeout=10) == "elsewhere.collect_klines"


async def test_unknown_type_is_refused_over_http_with_did_you_mean(database_url: str) -> None:
    app = gateway_test_app(database_url)
    async with app, running_gateway(app, worker=False) as gw, gw.http() as http:
        response = await http.post("/api/v1/tasks", json={"taskType": "t.ad"})
        assert response.status_code == 422
        error = response.json()["error"]
        assert error["code"] == "UNKNOWN_TASK_TYPE"
        assert "unknown task type 't.ad'" in error["message"]
        assert "(did you mean 't.add'?)" in error["message"]
