"""Alert webhooks: retried with backoff, timed out, given up, removed, and bad URLs refused."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

import tickbase
from tests.support.alerts import Receiver, deliveries, evaluate, fail_tasks
from tests.support.waiting import wait_until
from tickbase.cluster.alerts import AlertNotifier, AlertStore, check_webhook_url
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
