"""The alert store and notifier edges a user meets: listing, paging, rule changes, answers.

Bad listing filters are refused naming the filter; pages are newest first and
never overlap; a rule change touches only what it names; any 2xx is a
delivery, a redirect is not followed, and an unreachable receiver is recorded
as an error that never carries the URL's token.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

import tickbase
from tests.support.alerts import Receiver, deliveries, evaluate, events, fail_tasks
from tickbase.cluster.alerts import AlertNotifier, AlertStore
from tickbase.errors import InvalidAlert


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


@pytest.mark.parametrize(
    ("kwargs", "field", "problem"),
    [
        ({"state": "open"}, "state", "must be 'firing' or 'resolved'"),
        ({"limit": 0}, "limit", "must be between 1 and 10000"),
        ({"limit": 10_001}, "limit", "must be between 1 and 10000"),
    ],
)
async def test_bad_listing_filters_are_refused(
    store: AlertStore, kwargs: dict[str, Any], field: str, problem: str
) -> None:
    with pytest.raises(InvalidAlert) as refused:
        await store.alerts(**kwargs)
    assert refused.value.field == field and problem in str(refused.value)


async def test_alerts_page_newest_first_without_overlap(
    app: tickbase.App, store: AlertStore, sql_conn: psycopg.Connection[Any]
) -> None:
    # Fire and resolve the failures rule three times: three alerts, newest last.
    for _ in range(3):
        fail_tasks(sql_conn, 6)
        assert events(await evaluate(app, kinds={"failures_last_hour"})) == [
            ("fired", "failures-last-hour", "")
        ]
        sql_conn.execute("DELETE FROM tickbase.tasks")
        assert events(await evaluate(app, kinds={"failures_last_hour"})) == [
            ("resolved", "failures-last-hour", "")
        ]
    everything = await store.alerts()
    ids = [a.id for a in everything]
    assert ids == sorted(ids, reverse=True) and len(ids) == 3
    first = await store.alerts(limit=2)
    rest = await store.alerts(limit=2, before_id=first[-1].id)
    assert [a.id for a in first + rest] == ids
    assert await store.alerts(before_id=ids[-1]) == []
    assert all(a.state == "resolved" and a.resolved_at is not None for a in everything)
    assert await store.alerts(state="firing") == []


async def test_a_rule_change_touches_only_what_it_names(store: AlertStore) -> None:
    before = {r.name: r for r in await store.rules()}
    changed = await store.set_rule("backlog", threshold=500)
    assert (changed.threshold, changed.for_seconds, changed.enabled) == (500.0, 300.0, True)
    assert changed.updated_at >= before["backlog"].updated_at
    changed = await store.set_rule("backlog", for_seconds=0, enabled=False)
    assert (changed.threshold, changed.for_seconds, changed.enabled) == (500.0, 0.0, False)
    after = {r.name: r for r in await store.rules()}
    assert after["backlog"] == changed
    assert {n: r for n, r in after.items() if n != "backlog"} == {
        n: r for n, r in before.items() if n != "backlog"
    }
    # leader-missing has no threshold, but its for_seconds can change.
    assert (await store.set_rule("leader-missing", for_seconds=5)).for_seconds == 5.0


async def test_a_removed_webhook_added_again_gets_the_new_alerts_only(
    app: tickbase.App, store: AlertStore, receiver: Receiver, sql_conn: psycopg.Connection[Any]
) -> None:
    hook = await store.add_webhook(receiver.url + "/h")
    await store.remove_webhook(hook)
    assert await store.webhooks() == []
    fail_tasks(sql_conn, 6)
    await evaluate(app)
    assert deliveries(sql_conn) == []  # no webhook: nothing queued
    again = await store.add_webhook(receiver.url + "/h")
    [listed] = await store.webhooks()
    assert (listed.id, listed.enabled, listed.url) == (again, True, receiver.url + "/h")
    sql_conn.execute("DELETE FROM tickbase.tasks")
    assert events(await evaluate(app)) == [("resolved", "failures-last-hour", "")]
    async with AlertNotifier(app.pool) as notifier:
        assert await notifier.deliver_due() == 1
    assert [r.json["event"] for r in receiver.requests] == ["resolved"]


@pytest.mark.parametrize("status", [201, 202, 299])
async def test_any_2xx_answer_is_a_delivery(
    app: tickbase.App,
    store: AlertStore,
    receiver: Receiver,
    sql_conn: psycopg.Connection[Any],
    status: int,
) -> None:
    receiver.script = [status]
    await store.add_webhook(receiver.url)
    fail_tasks(sql_conn, 6)
    await evaluate(app)
    async with AlertNotifier(app.pool) as notifier:
        assert await notifier.deliver_due() == 1
    [row] = deliveries(sql_conn)
    assert row["attempts"] == 1 and row["delivered_at"] is not None
    assert row["last_error"] is None


@pytest.mark.parametrize(
    ("status", "error"), [(302, "HTTP 302 Status: boom"), (404, "HTTP 404 Status: boom")]
)
async def test_redirects_and_refusals_are_failures_to_retry(
    app: tickbase.App,
    store: AlertStore,
    receiver: Receiver,
    sql_conn: psycopg.Connection[Any],
    status: int,
    error: str,
) -> None:
    receiver.script = [status]
    await store.add_webhook(receiver.url + "/h")
    fail_tasks(sql_conn, 6)
    await evaluate(app)
    async with AlertNotifier(app.pool, backoff=60, max_backoff=60) as notifier:
        assert await notifier.deliver_due() == 0
        assert await notifier.deliver_due() == 0  # the retry is a minute away
    [row] = deliveries(sql_conn)
    assert (row["attempts"], row["delivered_at"], row["last_error"]) == (1, None, error)
    assert row["next_attempt_at"] is not None
    assert len(receiver.requests) == 1  # the redirect was not followed


async def test_an_unreachable_receiver_is_recorded_without_the_token(
    app: tickbase.App, store: AlertStore, sql_conn: psycopg.Connection[Any]
) -> None:
    with socket.socket() as probe:  # a port nobody listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    await store.add_webhook(f"http://127.0.0.1:{port}/hook/T0KEN?key=s3cret")
    fail_tasks(sql_conn, 6)
    await evaluate(app)
    async with AlertNotifier(app.pool, timeout=2.0, backoff=60, max_backoff=60) as notifier:
        assert await notifier.deliver_due() == 0
    [row] = deliveries(sql_conn)
    assert row["attempts"] == 1 and row["delivered_at"] is None
    assert row["last_error"].startswith("ConnectError: ")
    assert "s3cret" not in row["last_error"] and "T0KEN" not in row["last_error"]
