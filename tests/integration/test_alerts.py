"""Alerts fire once, resolve once, and reach a real local webhook receiver."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

import tickbase
from tests.support.waiting import wait_until
from tickbase.cluster.alerts import (
    ALERTS_CHANNEL,
    AlertChange,
    AlertNotifier,
    AlertStore,
    check_webhook_url,
    evaluate_alerts,
)
from tickbase.cluster.lease import Lease
from tickbase.db.sqlfile import load_queries
from tickbase.errors import InvalidAlert

ALERT_QUERIES = load_queries("tickbase.cluster", "alerts.sql")


@dataclass
class Received:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A real HTTP/1.1 server on 127.0.0.1 that records POSTs.

    ``script`` says how to answer each request in turn: an HTTP status, or
    "hang" (never answer); once it runs out, every request gets 200.
    """

    script: list[int | str] = field(default_factory=list)
    requests: list[Received] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None
    _handlers: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for handler in list(self._handlers):
            handler.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            request_line = (await reader.readline()).decode().strip()
            headers: dict[str, str] = {}
            while (line := (await reader.readline()).decode().strip()) != "":
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            method, target, _ = request_line.split(" ", 2)
            self.requests.append(Received(method, target, headers, body))
            action = self.script.pop(0) if self.script else 200
            if action == "hang":
                await asyncio.Event().wait()
            status = int(action)
            reason = {200: "OK", 500: "Internal Server Error"}.get(status, "Status")
            text = b"ok" if status < 300 else b"boom"
            writer.write(
                f"HTTP/1.1 {status} {reason}\r\ncontent-length: {len(text)}\r\n"
                "connection: close\r\n\r\n".encode()
                + text
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            self._handlers.discard(task)


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


async def evaluate(app: tickbase.App, **kwargs: Any) -> list[AlertChange]:
    async with app.pool.connection() as conn, conn.transaction():
        return await evaluate_alerts(conn, **kwargs)


def fail_tasks(conn: psycopg.Connection[Any], n: int, task_type: str = "t") -> None:
    conn.execute(
        "INSERT INTO tickbase.tasks (task_type, status, attempts, finished_at)"
        " SELECT %s, 'failed', 1, now() FROM generate_series(1, %s)",
        (task_type, n),
    )


def alert_rows(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT rule, subject, state, value FROM tickbase.alerts ORDER BY id"
    ).fetchall()


def deliveries(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    cursor = conn.cursor(row_factory=psycopg.rows.dict_row)
    return cursor.execute("SELECT * FROM tickbase.alert_deliveries ORDER BY id").fetchall()


def events(changes: Iterable[AlertChange]) -> list[tuple[str, str, str]]:
    return [(c.event, c.rule, c.subject) for c in changes]


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


async def test_webhook_retried_with_backoff_until_delivered(
    app: tickbase.App, store: AlertStore, receiver: Receiver, sql_conn: psycopg.Connection[Any]
) -> None:
    receiver.script = [500, 500, 200]
    await store.add_webhook(receiver.url + "/hook")
    fail_tasks(sql_conn, 6)
    [fired] = await evaluate(app)
    async with AlertNotifier(app.pool, timeout=2.0, backoff=0.5, max_backoff=1.0) as notifier:
        assert notifier.retry_delay(1) == 0.5 and notifier.retry_delay(3) == 1.0
        assert await notifier.deliver_due() == 0
        assert len(receiver.requests) == 1
        assert await notifier.deliver_due() == 0  # not due for another 0.5 s
        assert len(receiver.requests) == 1
        [row] = deliveries(sql_conn)
        assert row["attempts"] == 1 and row["delivered_at"] is None
        assert row["last_error"] == "HTTP 500 Internal Server Error: boom"

        async def delivered() -> bool:
            await notifier.deliver_due()
            return deliveries(sql_conn)[0]["delivered_at"] is not None

        await wait_until(delivered, timeout=10, interval=0.1, message="the third attempt")
    [row] = deliveries(sql_conn)
    assert row["attempts"] == 3 and row["next_attempt_at"] is None
    assert [r.headers["x-tickbase-attempt"] for r in receiver.requests] == ["1", "2", "3"]
    assert {r.headers["x-tickbase-delivery"] for r in receiver.requests} == {str(row["id"])}
    assert len({r.body for r in receiver.requests}) == 1  # the same body every time
    assert receiver.requests[0].json["id"] == fired.alert_id


async def test_hanging_receiver_times_out_and_is_retried(
    app: tickbase.App, store: AlertStore, receiver: Receiver, sql_conn: psycopg.Connection[Any]
) -> None:
    receiver.script = ["hang"]
    await store.add_webhook(receiver.url)
    fail_tasks(sql_conn, 6)
    await evaluate(app)
    async with AlertNotifier(app.pool, timeout=0.3, backoff=0.1) as notifier:
        assert await notifier.deliver_due() == 0
        [row] = deliveries(sql_conn)
        assert row["last_error"] == "timed out after 0.3 s"
        assert row["attempts"] == 1 and row["next_attempt_at"] is not None

        async def delivered() -> bool:
            return await notifier.deliver_due() == 1

        await wait_until(delivered, timeout=10, interval=0.05, message="the retry")
    [row] = deliveries(sql_conn)
    assert row["attempts"] == 2 and row["delivered_at"] is not None
    assert len(receiver.requests) == 2


async def test_gives_up_after_max_attempts(
    app: tickbase.App,
    store: AlertStore,
    receiver: Receiver,
    sql_conn: psycopg.Connection[Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    receiver.script = [500, 500, 500]
    await store.add_webhook(receiver.url + "/x?key=topsecret")
    fail_tasks(sql_conn, 6)
    await evaluate(app)
    async with AlertNotifier(app.pool, timeout=2.0, max_attempts=2, backoff=0.05) as notifier:

        async def given_up() -> bool:
            await notifier.deliver_due()
            row = deliveries(sql_conn)[0]
            return row["next_attempt_at"] is None

        await wait_until(given_up, timeout=10, interval=0.05, message="the delivery given up")
        assert await notifier.deliver_due() == 0
    [row] = deliveries(sql_conn)
    assert (row["attempts"], row["delivered_at"]) == (2, None)
    assert row["last_error"] == "HTTP 500 Internal Server Error: boom"
    assert len(receiver.requests) == 2
    [gave_up] = [r for r in caplog.records if "gave up" in r.getMessage()]
    assert gave_up.levelno == logging.WARNING
    assert f"webhook #{row['webhook_id']} http://127.0.0.1:{receiver.port}" in gave_up.getMessage()
    assert not any("topsecret" in r.getMessage() for r in caplog.records)


async def test_removing_a_webhook_drops_its_queue(
    app: tickbase.App, store: AlertStore, receiver: Receiver, sql_conn: psycopg.Connection[Any]
) -> None:
    kept = await store.add_webhook(receiver.url + "/kept")
    removed = await store.add_webhook(receiver.url + "/removed")
    assert await store.add_webhook(receiver.url + "/kept") == kept  # same URL, same webhook
    fail_tasks(sql_conn, 6)
    await evaluate(app)
    assert len(deliveries(sql_conn)) == 2
    await store.remove_webhook(removed)
    assert [w.id for w in await store.webhooks()] == [kept]
    async with AlertNotifier(app.pool) as notifier:
        assert await notifier.deliver_due() == 1
    assert [r.target for r in receiver.requests] == ["/kept"]
    with pytest.raises(InvalidAlert, match=r"invalid webhook id 999: no such webhook"):
        await store.remove_webhook(999)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://x", "the scheme must be http or https, not 'ftp'"),
        ("not a url", "not an http(s) URL (no scheme)"),
        ("example.com:8080/hook", "the scheme must be http or https, not 'example.com'"),
        ("http:/x", "no // after the scheme"),
        ("http://", "it has no host"),
        ("https://?token=1", "it has no host"),
        ("", "it is empty"),
        ("https://exa mple.com/x", "it contains whitespace"),
        ("http://host:99999/x", "it is not a valid URL"),
    ],
)
async def test_bad_webhook_url_refused_and_nothing_stored(
    store: AlertStore, sql_conn: psycopg.Connection[Any], url: str, problem: str
) -> None:
    with pytest.raises(InvalidAlert) as refused:
        await store.add_webhook(url)
    assert str(refused.value).startswith(f"invalid webhook url {url!r}: ")
    assert problem in str(refused.value)
    assert refused.value.field == "webhook url" and refused.value.value == url
    assert sql_conn.execute("SELECT count(*) FROM tickbase.alert_webhooks").fetchone() == (0,)


def test_webhook_url_normalised_and_checked_by_the_schema_too(
    sql_conn: psycopg.Connection[Any],
) -> None:
    assert check_webhook_url(" HTTPS://Example.com/a?b=1 ") == "https://Example.com/a?b=1"
    with pytest.raises(psycopg.errors.CheckViolation, match="alert_webhooks_url_http"):
        sql_conn.execute("INSERT INTO tickbase.alert_webhooks (url) VALUES ('ftp://x')")


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
