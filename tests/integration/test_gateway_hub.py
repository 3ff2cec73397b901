"""The gateway's hub fans task, alert and revocation news out to its watchers (real PostgreSQL).

Proven here: a task's final state reaches every watcher once and ends the
watch; an unwatched task is never reported, and unwatching twice is harmless;
a watcher that raises neither stops the others nor the hub; only progress
watches hear that a task started; a watch begun just after its task's
NOTIFY reads the task at once; NOTIFY payloads tolerate junk; alerts reach
their watchers as parsed JSON and junk is dropped; a revoked token's
watchers are told once, from a NOTIFY or from the safety check against the
database; and, with the hub running, a cancel committed elsewhere reaches
the watcher through a real NOTIFY.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

import tickbase
from tests.support.waiting import wait_until
from tickbase.db.listener import Listener
from tickbase.gateway.auth import TokenStore
from tickbase.gateway.hub import Hub, TaskState, parse_ids


class Seen:
    """A watcher that records what it was told."""

    def __init__(self) -> None:
        self.states: list[TaskState] = []

    def __call__(self, state: TaskState) -> None:
        self.states.append(state)

    def statuses(self) -> list[str]:
        return [state.status for state in self.states]


def hub_of(app: tickbase.App) -> Hub:
    return Hub(app.pool, app.listener)


def offline_hub() -> Hub:
    """A hub that is never connected: for the fan-out that reads nothing."""
    url = "postgresql://127.0.0.1:1/unused"
    return Hub(AsyncConnectionPool(url, open=False), Listener(url))


async def pending_task(app: tickbase.App, **payload: Any) -> int:
    return (await app.defer("tickbase.echo", payload)).id


def finish(sql_conn: psycopg.Connection[Any], task_id: int, status: str, result: str) -> None:
    sql_conn.execute(
        "UPDATE tickbase.tasks SET status = %s, result = %s::jsonb, finished_at = now(),"
        " attempts = 1 WHERE id = %s",
        (status, result, task_id),
    )


async def settled(hub: Hub) -> None:
    """Wait until the reads the hub spawned have run."""

    async def idle() -> bool:
        return not hub._checks

    await wait_until(idle, timeout=5, message="the hub's reads to finish")


async def test_a_final_state_reaches_every_watcher_once_and_ends_the_watch(
    app: tickbase.App, sql_conn: psycopg.Connection[Any]
) -> None:
    hub = hub_of(app)
    task_id = await pending_task(app, n=1)
    first, second = Seen(), Seen()
    hub.watch(task_id, first)
    hub.watch(task_id, second)
    await hub.check([task_id])  # still pending: told, and still watched
    assert first.statuses() == second.statuses() == ["pending"]
    finish(sql_conn, task_id, "succeeded", '{"sum": 3}')
    await hub.check([task_id])
    assert first.states[-1] == TaskState(task_id, "succeeded", {"sum": 3}, None)
    assert second.statuses() == ["pending", "succeeded"]
    await hub.check([task_id])  # the watch ended with the final state
    assert first.statuses() == ["pending", "succeeded"]
    assert hub._watchers == {} and hub._progress == {}


async def test_unwatched_tasks_are_not_reported_and_unwatch_is_idempotent(
    app: tickbase.App, sql_conn: psycopg.Connection[Any]
) -> None:
    hub = hub_of(app)
    task_id = await pending_task(app)
    kept, dropped = Seen(), Seen()
    hub.watch(task_id, kept)
    unwatch = hub.watch(task_id, dropped, progress=True)
    await settled(hub)  # a progress watch reads the task at once
    unwatch()
    unwatch()
    assert hub._progress[task_id] == 0
    finish(sql_conn, task_id, "failed", "null")
    await hub.check([task_id, 999_999])
    assert kept.statuses() == ["pending", "failed"]
    assert dropped.statuses() == ["pending"]
    other = await pending_task(app)
    hub.watch(other, Seen())()  # the last watcher gone: nothing kept for the task
    assert other not in hub._watchers and other not in hub._progress


async def test_a_raising_watcher_does_not_stop_the_others(
    app: tickbase.App, sql_conn: psycopg.Connection[Any], caplog: pytest.LogCaptureFixture
) -> None:
    hub = hub_of(app)
    task_id = await pending_task(app)

    def broken(state: TaskState) -> None:
        raise ValueError("watcher bug")

    good = Seen()
    hub.watch(task_id, broken)
    hub.watch(task_id, good)
    finish(sql_conn, task_id, "succeeded", "1")
    with caplog.at_level(logging.ERROR, logger="tickbase.gateway"):
        await hub.check([task_id])
    assert good.statuses() == ["succeeded"]
    assert [r.getMessage() for r in caplog.records] == ["a task watcher failed"]
    assert task_id not in hub._watchers


async def test_only_progress_watches_hear_that_a_task_started(
    app: tickbase.App, sql_conn: psycopg.Connection[Any]
) -> None:
    hub = hub_of(app)
    quiet_id, loud_id = await pending_task(app, n=1), await pending_task(app, n=2)
    quiet, loud = Seen(), Seen()
    hub.watch(quiet_id, quiet)
    hub.watch(loud_id, loud, progress=True)
    await settled(hub)
    assert (quiet.statuses(), loud.statuses()) == ([], ["pending"])
    sql_conn.execute(
        "UPDATE tickbase.tasks SET status = 'running', started_at = now(), attempts = 1,"
        " lease_expires_at = now() + interval '1 minute' WHERE id = ANY(%s)",
        ([quiet_id, loud_id],),
    )
    hub._on_started(f"{quiet_id},{loud_id}")
    await settled(hub)
    assert quiet.statuses() == [] and loud.statuses() == ["pending", "running"]


async def test_a_done_notice_reads_only_watched_tasks_and_late_watches_read_at_once(
    app: tickbase.App, sql_conn: psycopg.Connection[Any]
) -> None:
    hub = hub_of(app)
    watched_id, late_id = await pending_task(app, n=1), await pending_task(app, n=2)
    watched = Seen()
    hub.watch(watched_id, watched)
    finish(sql_conn, watched_id, "succeeded", "1")
    finish(sql_conn, late_id, "succeeded", "2")
    hub._on_done(f"{watched_id},{late_id},junk")
    await settled(hub)
    assert watched.statuses() == ["succeeded"]
    assert late_id not in hub._watchers  # nobody watched it: nothing read for it
    # The NOTIFY came before the watch: the new watch reads the task once.
    late = Seen()
    hub.watch(late_id, late)
    await settled(hub)
    assert late.states == [TaskState(late_id, "succeeded", 2, None)]


async def test_a_lost_listen_connection_reads_every_watched_task_again(
    app: tickbase.App, sql_conn: psycopg.Connection[Any]
) -> None:
    hub = hub_of(app)
    ids = [await pending_task(app, n=n) for n in range(3)]
    seen = {task_id: Seen() for task_id in ids}
    for task_id, watcher in seen.items():
        hub.watch(task_id, watcher)
    for task_id in ids[:2]:
        finish(sql_conn, task_id, "succeeded", "0")
    hub._on_reconnect()  # a NOTIFY sent while it was down is gone: read them all
    await settled(hub)
    assert [seen[i].statuses() for i in ids] == [["succeeded"], ["succeeded"], ["pending"]]
    assert list(hub._watchers) == [ids[2]]


def test_notice_payloads_are_comma_separated_ids_and_junk_is_skipped() -> None:
    assert parse_ids("1,2,3") == [1, 2, 3]
    assert parse_ids("7") == [7]
    assert parse_ids("") == []
    assert parse_ids("4,,x,5.0, 6") == [4, 6]


async def test_alerts_reach_their_watchers_parsed_and_junk_is_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hub = offline_hub()
    received: list[dict[str, Any]] = []

    def broken(alert: dict[str, Any]) -> None:
        raise RuntimeError("watcher bug")

    hub.watch_alerts(broken)
    unwatch = hub.watch_alerts(received.append)
    with caplog.at_level(logging.ERROR, logger="tickbase.gateway"):
        hub._on_alert('{"rule": "backlog", "state": "firing"}')
        hub._on_alert("{not json")
    assert received == [{"rule": "backlog", "state": "firing"}]
    assert [r.getMessage() for r in caplog.records] == ["an alert watcher failed"]
    unwatch()
    hub._on_alert('{"rule": "backlog", "state": "resolved"}')
    assert len(received) == 1


async def test_a_revocation_notice_tells_the_tokens_watchers_once() -> None:
    hub = offline_hub()
    told: list[str] = []
    hub.watch_token(5, lambda: told.append("a"))
    hub.watch_token(5, lambda: told.append("b"))
    hub.watch_token(6, lambda: told.append("other"))
    leaving = hub.watch_token(7, lambda: told.append("gone"))
    leaving()
    leaving()
    hub._on_revoked("5,x,7")
    assert sorted(told) == ["a", "b"]
    hub._on_revoked("5")
    assert sorted(told) == ["a", "b"]
    assert set(hub._token_watchers) == {6}


async def test_the_safety_check_finds_revocations_whose_notice_was_missed(
    app: tickbase.App,
) -> None:
    hub = hub_of(app)
    tokens = TokenStore(app.pool)
    live = await tokens.create("viewer", name="live")
    revoked = await tokens.create("viewer", name="revoked")
    told: list[int] = []
    hub.watch_token(live.id, lambda: told.append(live.id))
    hub.watch_token(revoked.id, lambda: told.append(revoked.id))
    hub.watch_token(999_999, lambda: told.append(999_999))  # a token that is gone
    await hub.check_tokens()
    assert told == [999_999]
    assert await tokens.revoke(revoked.id)  # the hub is not listening: no notice heard
    hub._on_tokens_reconnect()
    await settled(hub)
    assert told == [999_999, revoked.id]
    assert set(hub._token_watchers) == {live.id}


async def test_a_running_hub_hears_a_cancel_committed_elsewhere(app: tickbase.App) -> None:
    hub = hub_of(app)
    await hub.start()
    try:
        task_id = await pending_task(app)
        done = asyncio.Event()
        seen = Seen()

        def watcher(state: TaskState) -> None:
            seen(state)
            if state.final:
                done.set()

        hub.watch(task_id, watcher)
        assert await app.queue.cancel(task_id, reason="by a test") == "cancelled"
        async with asyncio.timeout(5):
            await done.wait()
        assert seen.statuses() == ["cancelled"]
        assert seen.states[0] == TaskState(task_id, "cancelled", None, None)
    finally:
        await hub.stop()
    assert hub.failure is None
