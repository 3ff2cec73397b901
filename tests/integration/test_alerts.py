"""Alerts fire once and resolve once: each rule kind, for_seconds, rule changes, racing passes."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

import tickbase
from tests.support.alerts import Receiver, alert_rows, deliveries, evaluate, events, fail_tasks
from tests.support.waiting import wait_until
from tickbase.cluster.alerts import (
    ALERTS_CHANNEL,
    AlertChange,
    AlertNotifier,
    AlertStore,
    evaluate_alerts,
)
from tickbase.cluster.lease import Lease
from tickbase.db.sqlfile import load_queries
from tickbase.errors import InvalidAlert

ALERT_QUERIES = load_queries("tickbase.cluster", "alerts.sql")


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    server = Receiver()
    await server.start()
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
def store(app: tickbase.App) -> AlertStore:
    return AlertStore(app.pool)


async def test_fires_once_posts_once_resolves_once(
    app: tickbase.App,
    store: AlertStore,
    receiver: Receiver,
    database_url: str,
    sql_conn: psycopg.Connection[Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="tickbase.alerts")
    await store.add_webhook(f"{receiver.url}/hooks/ops?token=s3cret")
    listen = await psycopg.AsyncConnection.connect(database_url, autocommit=True)
    await listen.execute(f"LISTEN {ALERTS_CHANNEL}")
    async with AlertNotifier(app.pool, timeout=2.0) as notifier:
        fail_tasks(sql_conn, 5)
        assert await evaluate(app) == []  # 5 is the threshold, not above it
        fail_tasks(sql_conn, 1)

        [fired] = await evaluate(app)
        assert (fired.event, fired.rule, fired.kind, fired.subject, fired.value) == (
            "fired",
            "failures-last-hour",
            "failures_last_hour",
            "",
            6.0,
        )
        assert fired.message == "6 tasks failed in the last hour (threshold 5)"
        for _ in range(3):
            assert await evaluate(app) == []  # the condition persists: no new firing
        assert alert_rows(sql_conn) == [("failures-last-hour", "", "firing", 6.0)]

        assert await notifier.deliver_due() == 1
        assert await notifier.deliver_due() == 0
        [post] = receiver.requests
        assert post.method == "POST" and post.target == "/hooks/ops?token=s3cret"
        assert post.headers["content-type"] == "application/json"
        assert post.headers["x-tickbase-event"] == "fired"
        body = post.json
        assert body == {
            "id": fired.alert_id,
            "event": "fired",
            "rule": "failures-last-hour",
            "kind": "failures_last_hour",
            "subject": "",
            "state": "firing",
            "value": 6.0,
            "message": "6 tasks failed in the last hour (threshold 5)",
            "detail": {"threshold": 5.0, "windowSeconds": 3600, "byTaskType": {"t": 6}},
            "firedAt": body["firedAt"],
            "resolvedAt": None,
        }
        assert datetime.fromisoformat(body["firedAt"]) == fired.fired_at

        # The failures age out of the hour: the condition clears.
        sql_conn.execute("UPDATE tickbase.tasks SET finished_at = now() - interval '2 hours'")
        [resolved] = await evaluate(app)
        assert (resolved.event, resolved.alert_id) == ("resolved", fired.alert_id)
        assert resolved.resolved_at is not None and resolved.resolved_at >= fired.fired_at
        for _ in range(3):
            assert await evaluate(app) == []
        assert await notifier.deliver_due() == 1
        assert await notifier.deliver_due() == 0
        assert [r.json["event"] for r in receiver.requests] == ["fired", "resolved"]
        second = receiver.requests[1].json
        assert second["id"] == fired.alert_id and second["state"] == "resolved"
        assert datetime.fromisoformat(second["resolvedAt"]) == resolved.resolved_at
        assert alert_rows(sql_conn) == [("failures-last-hour", "", "resolved", 6.0)]

    notified = [n async for n in listen.notifies(timeout=1.0)]
    await listen.close()
    assert [n.channel for n in notified] == [ALERTS_CHANNEL] * 2
    assert [(json.loads(n.payload)["event"], json.loads(n.payload)["id"]) for n in notified] == [
        ("fired", fired.alert_id),
        ("resolved", fired.alert_id),
    ]

    logged = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "tickbase.alerts"]
    changes = [entry for entry in logged if "rule=" in entry[1]]
    assert [level for level, _ in changes] == [logging.WARNING, logging.INFO]
    assert changes[0][1] == (
        "alert fired: rule=failures-last-hour subject=- value=6.0:"
        " 6 tasks failed in the last hour (threshold 5)"
    )
    assert changes[1][1].startswith("alert resolved: rule=failures-last-hour")
    assert not any("s3cret" in message for _, message in logged)


async def test_for_seconds_is_honoured(
    app: tickbase.App, store: AlertStore, sql_conn: psycopg.Connection[Any]
) -> None:
    rule = await store.set_rule("backlog", threshold=3, for_seconds=60)
    assert (rule.threshold, rule.for_seconds, rule.enabled) == (3.0, 60.0, True)
    sql_conn.execute(
        "INSERT INTO tickbase.tasks (task_type, run_at)"
        " SELECT 't', now() - interval '1 second' FROM generate_series(1, 4)"
    )
    start = datetime.now(UTC)

    async def at(seconds: float) -> list[AlertChange]:
        return await evaluate(app, kinds={"backlog"}, now=start + timedelta(seconds=seconds))

    assert await at(0) == []
    assert await at(59) == []
    # The condition clears before the minute is up: the clock starts again.
    sql_conn.execute("UPDATE tickbase.tasks SET run_at = now() + interval '1 day'")
    assert await at(60) == []
    assert sql_conn.execute("SELECT count(*) FROM tickbase.alert_pending").fetchone() == (0,)
    sql_conn.execute("UPDATE tickbase.tasks SET run_at = now() - interval '1 second'")
    assert await at(70) == []
    assert await at(129) == []
    [fired] = await at(131)
    assert (fired.event, fired.rule, fired.value) == ("fired", "backlog", 4.0)
    assert fired.detail["oldest_due_seconds"] > 130
    assert await at(140) == []
    sql_conn.execute("DELETE FROM tickbase.tasks")
    assert events(await at(150)) == [("resolved", "backlog", "")]
    assert sql_conn.execute("SELECT count(*) FROM tickbase.alert_pending").fetchone() == (0,)


async def test_node_down_is_one_alert_per_node(
    app: tickbase.App, sql_conn: psycopg.Connection[Any]
) -> None:
    sql_conn.execute(
        "INSERT INTO tickbase.nodes (node_id, host, pid, version, heartbeat_interval, heartbeat_at)"
        " VALUES ('n1', 'h1', 1, 'x', 1, now() - interval '1 minute'),"
        "        ('n2', 'h2', 2, 'x', 1, now() - interval '1 minute'),"
        "        ('n3', 'h3', 3, 'x', 60, now() - interval '1 minute')"  # slow but alive
    )
    fired = await evaluate(app, kinds={"node_down"})
    assert events(fired) == [("fired", "node-down", "n1"), ("fired", "node-down", "n2")]
    assert fired[0].detail["host"] == "h1" and fired[0].detail["removed"] is False
    assert await evaluate(app, kinds={"node_down"}) == []

    # The leader reaps n1 and n2 (the reaper's own test of silence): they
    # stay down, recorded as lost; a node that leaves cleanly is not lost.
    sql_conn.execute(
        "INSERT INTO tickbase.nodes (node_id, host, pid, version, heartbeat_interval)"
        " VALUES ('clean', 'h4', 4, 'x', 5)"
    )
    reaped = sql_conn.execute(
        "DELETE FROM tickbase.nodes"
        " WHERE heartbeat_at < clock_timestamp() - make_interval(secs => 3 * heartbeat_interval)"
        " RETURNING node_id"
    ).fetchall()
    assert sorted(reaped) == [("n1",), ("n2",)]
    sql_conn.execute("DELETE FROM tickbase.nodes WHERE node_id = 'clean'")
    assert sql_conn.execute("SELECT node_id FROM tickbase.lost_nodes ORDER BY 1").fetchall() == [
        ("n1",),
        ("n2",),
    ]
    assert await evaluate(app, kinds={"node_down"}) == []

    # n1 heartbeats again under its id: its alert resolves, n2's stays.
    sql_conn.execute(
        "INSERT INTO tickbase.nodes (node_id, host, pid, version, heartbeat_interval)"
        " VALUES ('n1', 'h1', 1, 'x', 60)"
    )
    assert events(await evaluate(app, kinds={"node_down"})) == [("resolved", "node-down", "n1")]
    sql_conn.execute("DELETE FROM tickbase.nodes")  # n1 and n3 leave cleanly
    assert alert_rows(sql_conn)[1:] == [("node-down", "n2", "firing", pytest.approx(60, abs=5))]
    assert sql_conn.execute("SELECT node_id FROM tickbase.lost_nodes").fetchall() == [("n2",)]

    # A node gone for a day is forgotten, and its alert resolves.
    later = datetime.now(UTC) + timedelta(hours=25)
    assert events(await evaluate(app, kinds={"node_down"}, now=later)) == [
        ("resolved", "node-down", "n2")
    ]
    assert sql_conn.execute("SELECT count(*) FROM tickbase.lost_nodes").fetchone() == (0,)


async def test_leader_missing(app: tickbase.App, sql_conn: psycopg.Connection[Any]) -> None:
    start = datetime.now(UTC)
    assert await evaluate(app, kinds={"leader_missing"}, now=start) == []  # for 30 s first
    [fired] = await evaluate(app, kinds={"leader_missing"}, now=start + timedelta(seconds=31))
    assert (fired.rule, fired.value) == ("leader-missing", None)
    assert fired.message == "no node holds the leader lease (none ever has)"
    # A pass over other kinds leaves the leader alert alone.
    assert await evaluate(app, kinds={"backlog", "node_down"}) == []

    lease = Lease(app.pool, holder="node-a", ttl=15)
    assert await lease.acquire()
    assert events(await evaluate(app, kinds={"leader_missing"})) == [
        ("resolved", "leader-missing", "")
    ]

    # The leader's lease ran out 40 s ago: the condition began then, so the
    # first pass that sees it fires at once.
    sql_conn.execute("UPDATE tickbase.leases SET expires_at = now() - interval '40 seconds'")
    [again] = await evaluate(app, kinds={"leader_missing"})
    assert again.event == "fired" and again.alert_id != fired.alert_id
    assert again.message == "no node holds the leader lease (the lease of node-a expired 40 s ago)"
    assert again.detail["last_holder"] == "node-a" and again.value == pytest.approx(40, abs=2)


async def test_schedule_lag(app: tickbase.App, sql_conn: psycopg.Connection[Any]) -> None:
    sql_conn.execute(
        "INSERT INTO tickbase.schedules (name, task_type, kind, interval_seconds, next_fire_at)"
        " VALUES ('on-time', 't', 'interval', 10, now() - interval '30 seconds'),"
        "        ('late', 't', 'interval', 10, now() - interval '120 seconds')"
    )
    [fired] = await evaluate(app, kinds={"schedule_lag"})
    assert (fired.rule, fired.detail["schedule"], fired.detail["late_schedules"]) == (
        "schedule-lag",
        "late",
        1,
    )
    assert fired.value == pytest.approx(120, abs=2)
    assert fired.message == "schedule late is 120 s late (threshold 60 s; late schedules: 1)"
    sql_conn.execute("UPDATE tickbase.schedules SET paused = true WHERE name = 'late'")
    assert events(await evaluate(app, kinds={"schedule_lag"})) == [("resolved", "schedule-lag", "")]


async def test_disabled_rule_resolves_and_stays_quiet(
    app: tickbase.App, store: AlertStore, sql_conn: psycopg.Connection[Any]
) -> None:
    fail_tasks(sql_conn, 10)
    assert events(await evaluate(app)) == [("fired", "failures-last-hour", "")]
    await store.set_rule("failures-last-hour", enabled=False)
    assert events(await evaluate(app)) == [("resolved", "failures-last-hour", "")]
    assert await evaluate(app) == []
    await store.set_rule("failures-last-hour", enabled=True)
    assert events(await evaluate(app)) == [("fired", "failures-last-hour", "")]
    assert [(a.state, a.rule) for a in await store.alerts()] == [
        ("firing", "failures-last-hour"),
        ("resolved", "failures-last-hour"),
    ]
    assert len(await store.alerts(state="resolved")) == 1


async def test_concurrent_evaluators_fire_once_and_resolve_once(
    app: tickbase.App,
    store: AlertStore,
    receiver: Receiver,
    database_url: str,
    sql_conn: psycopg.Connection[Any],
) -> None:
    await store.add_webhook(receiver.url)
    first = await psycopg.AsyncConnection.connect(database_url, autocommit=True)
    second = await psycopg.AsyncConnection.connect(database_url, autocommit=True)
    second_pid = second.info.backend_pid

    async def blocked() -> bool:
        row = sql_conn.execute(
            "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (second_pid,)
        ).fetchone()
        return row is not None and row[0] == "Lock"

    async def race() -> tuple[list[AlertChange], list[AlertChange]]:
        async with first.transaction():
            ours = await evaluate_alerts(first)

            async def theirs_in_a_transaction() -> list[AlertChange]:
                async with second.transaction():
                    return await evaluate_alerts(second)

            # Both saw the same world; the second waits on the first's rows.
            theirs_task = asyncio.create_task(theirs_in_a_transaction())
            await wait_until(blocked, timeout=5, message="the second evaluator waiting")
        return ours, await asyncio.wait_for(theirs_task, 5)

    try:
        fail_tasks(sql_conn, 6)
        ours, theirs = await race()
        assert events(ours) == [("fired", "failures-last-hour", "")] and theirs == []
        assert alert_rows(sql_conn) == [("failures-last-hour", "", "firing", 6.0)]

        sql_conn.execute("DELETE FROM tickbase.tasks")
        ours, theirs = await race()
        assert events(ours) == [("resolved", "failures-last-hour", "")] and theirs == []
        assert alert_rows(sql_conn) == [("failures-last-hour", "", "resolved", 6.0)]
    finally:
        await first.close()
        await second.close()
    assert [(d["event"], d["attempts"]) for d in deliveries(sql_conn)] == [
        ("fired", 0),
        ("resolved", 0),
    ]


@pytest.mark.parametrize(
    ("name", "changes", "problem"),
    [
        ("backlogg", {"threshold": 1}, "no such rule (did you mean 'backlog'?"),
        ("backlog", {"threshold": -1}, "invalid threshold -1: must be a finite number >= 0"),
        ("backlog", {"threshold": float("nan")}, "invalid threshold nan"),
        ("backlog", {"for_seconds": -5}, "invalid for_seconds -5"),
        ("backlog", {"for_seconds": float("inf")}, "invalid for_seconds inf"),
        ("leader-missing", {"threshold": 3}, "has no threshold; set for_seconds instead"),
        ("node-down", {"threshold": 0}, "0 would mark every node down"),
    ],
)
async def test_bad_rule_change_refused_and_nothing_changed(
    store: AlertStore, name: str, changes: dict[str, Any], problem: str
) -> None:
    before = await store.rules()
    with pytest.raises(InvalidAlert, match=r"^invalid ") as refused:
        await store.set_rule(name, **changes)
    assert problem in str(refused.value)
    assert await store.rules() == before


async def test_default_rules(store: AlertStore) -> None:
    assert [
        (r.name, r.kind, r.threshold, r.for_seconds, r.enabled) for r in await store.rules()
    ] == [
        ("backlog", "backlog", 100.0, 300.0, True),
        ("data-completeness", "data_completeness", 95.0, 0.0, True),
        ("failures-last-hour", "failures_last_hour", 5.0, 0.0, True),
        ("leader-missing", "leader_missing", None, 30.0, True),
        ("no-worker-for-type", "no_worker_for_type", 0.0, 60.0, True),
        ("node-down", "node_down", None, 0.0, True),
        ("realtime-circuit-open", "realtime_circuit_open", None, 0.0, True),
        ("realtime-loop-slow", "realtime_loop_slow", None, 60.0, True),
        ("realtime-writer-drops", "realtime_writer_drops", 0.0, 0.0, True),
        ("schedule-lag", "schedule_lag", 60.0, 0.0, True),
    ]


async def test_unknown_kind_refused(app: tickbase.App) -> None:
    with pytest.raises(InvalidAlert, match="did you mean 'backlog'"):
        await evaluate(app, kinds={"backlogs"})


async def test_a_narrow_pass_does_not_count_tasks(sql_conn: psycopg.Connection[Any]) -> None:
    # Every node runs the leader check from its heartbeat: it must not scan tasks.
    plan = "\n".join(
        row[0]
        for row in sql_conn.execute(
            b"EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) " + ALERT_QUERIES["alert_evaluate"].encode(),
            {"now": None, "kinds": ["leader_missing"]},
        )
    )
    for line in plan.splitlines():
        if "on tasks" in line or "tasks_" in line:
            assert "never executed" in line, plan
