"""Handlers steer their task: Retry(delay), Snooze(seconds), Cancel(reason)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import psycopg
import pytest

import tickbase
from tests.conftest import fast_settings
from tests.e2e.conftest import run_cli
from tests.integration.test_worker import running_worker
from tickbase import Cancel, Retry, Snooze, TaskContext, TaskFailed
from tickbase.queue.models import OutcomeKind


@pytest.fixture
def app(database_url: str) -> tickbase.App:
    return tickbase.App(settings=fast_settings(database_url))


def row(sql_conn: psycopg.Connection[Any], task_id: int) -> dict[str, Any]:
    cursor = sql_conn.execute(
        "SELECT status, attempts, error, result, finished_at FROM tickbase.tasks WHERE id = %s",
        (task_id,),
    )
    found = cursor.fetchone()
    assert found is not None and cursor.description is not None
    return dict(zip([c.name for c in cursor.description], found, strict=True))


def events(sql_conn: psycopg.Connection[Any], task_id: int) -> list[tuple[str, Any]]:
    return [
        (r[0], r[1])
        for r in sql_conn.execute(
            "SELECT event, detail FROM tickbase.task_events WHERE task_id = %s ORDER BY at",
            (task_id,),
        )
    ]


async def test_snooze_runs_again_later_without_using_an_attempt(
    app: tickbase.App, sql_conn: psycopg.Connection[Any], database_url: str
) -> None:
    runs: list[float] = []

    @app.task(name="t.snoozy")
    async def snoozy(context: TaskContext) -> int:
        runs.append(asyncio.get_running_loop().time())
        if len(runs) == 1:
            raise Snooze(0.6, reason="exchange in maintenance")
        if len(runs) == 2:
            return Snooze(0.3)  # type: ignore[return-value]  # returned, not raised: alike
        return context.attempt

    async with app, running_worker(app):
        handle = await snoozy.defer()
        assert await handle.result(timeout=15) == 1  # two snoozes used no attempt
    assert runs[1] - runs[0] >= 0.55 and runs[2] - runs[1] >= 0.25
    stored = row(sql_conn, handle.id)
    assert (stored["status"], stored["attempts"], stored["error"]) == ("succeeded", 1, None)
    logged = events(sql_conn, handle.id)
    assert [e for e, _ in logged].count("snoozed") == 2
    first = next(detail for event, detail in logged if event == "snoozed")
    assert first == {"type": "Snooze", "message": "exchange in maintenance", "seconds": 0.6}

    shown = run_cli("tasks", "show", str(handle.id), database_url=database_url)
    assert shown.returncode == 0 and "snoozed" in shown.stdout
    assert "exchange in maintenance" in shown.stdout


async def test_retry_counts_an_attempt_and_waits_the_chosen_delay(
    app: tickbase.App, sql_conn: psycopg.Connection[Any]
) -> None:
    @app.task(name="t.retry", retries=1, retry_delay=30.0)
    async def flaky(context: TaskContext) -> int:
        if context.attempt == 1:
            raise Retry(delay=0.3, reason="rate limited by the exchange")
        return context.attempt

    @app.task(name="t.retry_out", retries=1)
    async def always() -> None:
        raise Retry(delay=0.1, reason="still rate limited")

    async with app, running_worker(app):
        # The retry_delay of 30 s would not let this finish in time: the chosen 0.3 s does.
        handle = await flaky.defer()
        assert await handle.result(timeout=10) == 2
        out = await always.defer()
        with pytest.raises(TaskFailed, match="still rate limited"):
            await out.result(timeout=10)
    assert row(sql_conn, handle.id)["attempts"] == 2
    assert [e for e, _ in events(sql_conn, handle.id)] == [
        "started",
        "retry_requested",
        "started",
        "succeeded",
    ]
    failed = row(sql_conn, out.id)
    assert (failed["status"], failed["attempts"]) == ("failed", 2)
    assert failed["error"]["type"] == "Retry"  # no attempts left: failed, with its reason


async def test_cancel_ends_the_task_cancelled_with_its_reason(
    app: tickbase.App, sql_conn: psycopg.Connection[Any]
) -> None:
    @app.task(name="t.delisted", retries=3)
    def delisted(symbol: str) -> None:  # a sync handler, raising in its thread
        raise Cancel(f"{symbol} is delisted")

    async with app, running_worker(app):
        handle = await delisted.defer(symbol="LUNAUSDT")
        with pytest.raises(TaskFailed, match="LUNAUSDT is delisted"):
            await handle.result(timeout=10)
    stored = row(sql_conn, handle.id)
    assert (stored["status"], stored["attempts"]) == ("cancelled", 1)  # never retried
    assert stored["finished_at"] is not None
    assert events(sql_conn, handle.id)[-1] == (
        "cancelled",
        {"type": "Cancel", "message": "LUNAUSDT is delisted"},
    )


async def test_a_snoozed_task_with_a_cancel_requested_ends_cancelled(
    app: tickbase.App, sql_conn: psycopg.Connection[Any]
) -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    @app.task(name="t.stubborn")
    async def stubborn() -> None:
        started.set()
        with contextlib.suppress(asyncio.CancelledError):
            await release.wait()  # ignores the cancel, then asks for a snooze: the cancel wins
        raise Snooze(60)

    async with app, running_worker(app):
        handle = await stubborn.defer()
        await asyncio.wait_for(started.wait(), 10)
        await app.queue.cancel(handle.id)
        with pytest.raises(TaskFailed):
            await handle.result(timeout=10)
    assert row(sql_conn, handle.id)["status"] == "cancelled"


def test_bad_delays_are_refused_with_the_field_named() -> None:
    with pytest.raises(tickbase.InvalidTask, match="snooze seconds -1"):
        Snooze(-1)
    with pytest.raises(tickbase.InvalidTask, match="retry delay inf"):
        Retry(delay=float("inf"))
    assert Retry().delay is None  # the task's own backoff


# Every outcome a worker reports, in every state that matters, and the status the
# database gives it (tickbase.outcome_status): the enum and the SQL agree.
EXPECTED = {
    # (attempts used, max attempts, cancel requested) -> status
    OutcomeKind.SUCCEEDED: {(1, 1, False): "succeeded", (1, 3, True): "succeeded"},
    OutcomeKind.FAILED: {
        (1, 3, False): "retrying",
        (3, 3, False): "failed",
        (1, 3, True): "failed",
    },
    OutcomeKind.RETRY: {(1, 3, False): "retrying", (3, 3, False): "failed", (1, 3, True): "failed"},
    OutcomeKind.FAILED_FINAL: {(1, 3, False): "failed"},
    OutcomeKind.CANCELLED: {(1, 3, False): "cancelled"},
    OutcomeKind.SNOOZED: {
        (1, 3, False): "pending",
        (3, 3, False): "pending",
        (1, 3, True): "cancelled",
    },
    OutcomeKind.REQUEUED: {(1, 3, False): "pending", (1, 3, True): "pending"},
}


def test_every_outcome_kind_has_a_status(sql_conn: psycopg.Connection[Any]) -> None:
    assert set(EXPECTED) == set(OutcomeKind)
    for kind, cases in EXPECTED.items():
        for (attempts, max_attempts, cancel), status in cases.items():
            got = sql_conn.execute(
                "SELECT tickbase.outcome_status(%s, %s, %s, %s)",
                (kind.value, attempts, max_attempts, cancel),
            ).fetchone()
            assert got is not None and got[0] == status, (kind, attempts, max_attempts, cancel)
    unknown = sql_conn.execute("SELECT tickbase.outcome_status('exploded', 1, 1, false)")
    assert unknown.fetchone() == (None,)  # refused by the NOT NULL status, never stored
