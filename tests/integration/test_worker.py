"""A worker in this process against a real PostgreSQL: running, retrying, stopping, recovering."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

import tickbase
from tests.conftest import fast_settings
from tests.support.waiting import wait_until
from tickbase import ResultTimeout, TaskFailed, TaskStatus
from tickbase.worker.runner import TRIM_MARKER


@contextlib.asynccontextmanager
async def running_worker(app: tickbase.App, **kwargs: Any) -> AsyncIterator[Any]:
    worker = app.worker(**kwargs)
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(worker.started.wait(), 10)
    try:
        yield worker
    finally:
        worker.request_stop()
        await asyncio.wait_for(task, 15)


@pytest.fixture
def fresh_app(database_url: str) -> tickbase.App:
    return tickbase.App(settings=fast_settings(database_url))


async def test_async_and_sync_handlers_return_results(fresh_app: tickbase.App) -> None:
    app = fresh_app

    @app.task
    async def add(a: int, b: int) -> int:
        await asyncio.sleep(0.01)
        return a + b

    @app.task
    def multiply(a: int, b: int) -> int:
        time.sleep(0.01)
        return a * b

    @app.task
    async def eager(x: int) -> dict[str, int]:
        return {"x": x}

    async with app, running_worker(app):
        assert await (await add.defer(a=2, b=3)).result(timeout=10) == 5
        assert await (await multiply.defer(a=2, b=3)).result(timeout=10) == 6
        assert await (await eager.defer(x=7)).result(timeout=10) == {"x": 7}
        echo = await app.defer("tickbase.echo", {"symbol": "ESZ5", "bars": [1, 2]})
        assert await echo.result(timeout=10) == {"symbol": "ESZ5", "bars": [1, 2]}
        handles = await add.defer_many([{"a": i, "b": i} for i in range(50)])
        assert [await h.result(timeout=10) for h in handles] == [2 * i for i in range(50)]


async def test_defer_options_beside_payload(fresh_app: tickbase.App) -> None:
    app = fresh_app

    @app.task(queue="md", retries=2)
    async def collect(symbol: str, priority: int = 0) -> str:
        return symbol

    async with app:
        handle = await collect.defer(symbol="BTCUSDT", priority=7, delay=60)
        task = await handle.get()
    # `priority` is a handler parameter, so it stays payload; `delay` is an option
    assert task.payload == {"symbol": "BTCUSDT", "priority": 7}
    assert task.priority == 0 and task.queue == "md" and task.max_attempts == 3
    assert (task.run_at - task.created_at).total_seconds() > 50


async def test_result_wakes_on_notify_not_poll(database_url: str) -> None:
    # A poll interval far longer than the test: only NOTIFY can deliver the result in time.
    app = tickbase.App(settings=fast_settings(database_url, poll_interval=30))
    async with app, running_worker(app):
        await asyncio.sleep(0.2)  # the worker is idle and listening
        started = time.monotonic()
        handle = await app.defer("tickbase.echo", {"x": 1})
        assert await handle.result(timeout=5) == {"x": 1}
        assert time.monotonic() - started < 2


async def test_a_type_without_handler_waits_for_a_worker_that_has_one(
    database_url: str, sql_conn: psycopg.Connection[Any]
) -> None:
    """Old code: the worker claimed every type and failed this one (UnknownTaskType)."""
    producer = tickbase.App(settings=fast_settings(database_url))
    other = tickbase.App(settings=fast_settings(database_url))

    @other.task(name="other.double")
    async def double(x: int) -> int:
        return 2 * x

    async with producer as app, running_worker(app):
        handle = await app.defer("other.double", {"x": 21})
        await asyncio.sleep(1.0)  # several claims and polls of a worker without it
        assert (await handle.get()).status == "pending"
        events = sql_conn.execute(
            "SELECT count(*) FROM tickbase.task_events WHERE task_id = %s", (handle.id,)
        ).fetchone()
        assert events == (0,)
        async with other, running_worker(other):
            assert await handle.result(timeout=10) == 42


async def test_retries_then_success(fresh_app: tickbase.App) -> None:
    app = fresh_app
    calls: list[int] = []

    @app.task(retries=3, retry_delay=0.05)
    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError(f"feed down (call {len(calls)})")
        return "ok"

    async with app, running_worker(app):
        handle = await flaky.defer()
        assert await handle.result(timeout=15) == "ok"
        task = await handle.get()
        events = [e.event for e in await app.queue.events(handle.id)]
    assert task.attempts == 3 and task.status is TaskStatus.SUCCEEDED
    assert events == [
        "started",
        "retrying",
        "started",
        "retrying",
        "started",
        "succeeded",
    ]


async def test_attempts_exhausted_keeps_last_error(fresh_app: tickbase.App) -> None:
    app = fresh_app
    calls: list[int] = []

    @app.task(retries=1, retry_delay=0.01)
    async def broken() -> None:
        calls.append(1)
        raise ValueError(f"bad bar #{len(calls)}")

    async with app, running_worker(app):
        handle = await broken.defer()
        with pytest.raises(TaskFailed, match="bad bar #2"):
            await handle.result(timeout=15)
        task = await handle.get()
    assert task.status is TaskStatus.FAILED and task.attempts == 2
    assert task.error is not None
    assert task.error["type"] == "ValueError"
    assert "raise ValueError" in task.error["traceback"]


async def test_timeout_fails_the_attempt(fresh_app: tickbase.App) -> None:
    app = fresh_app

    @app.task(timeout=0.2)
    async def hangs() -> None:
        await asyncio.sleep(30)

    async with app, running_worker(app):
        started = time.monotonic()
        handle = await hangs.defer()
        with pytest.raises(TaskFailed, match=r"timeout of 0\.2 s"):
            await handle.result(timeout=10)
        assert time.monotonic() - started < 5


async def test_cancel_running_task_stops_its_handler(fresh_app: tickbase.App) -> None:
    app = fresh_app
    started = asyncio.Event()
    stopped: list[str] = []

    @app.task
    async def long_job() -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            stopped.append("cancelled")
            raise

    async with app, running_worker(app):
        handle = await long_job.defer()
        await asyncio.wait_for(started.wait(), 10)
        assert await handle.cancel() is TaskStatus.RUNNING
        with pytest.raises(TaskFailed) as excinfo:
            await handle.result(timeout=10)
    assert excinfo.value.status == "cancelled"
    assert stopped == ["cancelled"]


async def test_result_timeout_and_large_results_trimmed(database_url: str) -> None:
    app = tickbase.App(settings=fast_settings(database_url, result_max_bytes=1000))

    @app.task
    async def big() -> list[int]:
        return list(range(10_000))

    @app.task
    async def not_json() -> object:
        return object()

    async with app:
        pending = await app.defer("tickbase.noop", {})
        with pytest.raises(ResultTimeout, match=r"did not finish within 0\.3 s"):
            await pending.result(timeout=0.3)
        async with running_worker(app):
            result = await (await big.defer()).result(timeout=10)
            assert result[TRIM_MARKER] is True and result["original_bytes"] > 1000
            with pytest.raises(TaskFailed, match="not JSON-encodable"):
                await (await not_json.defer()).result(timeout=10)


async def test_bad_kwargs_fail_the_task_not_the_worker(fresh_app: tickbase.App) -> None:
    app = fresh_app

    @app.task
    async def needs_symbol(symbol: str) -> str:
        return symbol

    async with app, running_worker(app):
        with pytest.raises(TaskFailed, match="TypeError"):
            await (await app.defer(needs_symbol.name, {"wrong": 1})).result(timeout=10)
        assert await (await needs_symbol.defer(symbol="ES")).result(timeout=10) == "ES"


async def test_graceful_stop_requeues_unfinished_without_counting(database_url: str) -> None:
    app = tickbase.App(settings=fast_settings(database_url, shutdown_grace=0.3))
    started = asyncio.Event()
    finished: list[int] = []

    @app.task
    async def work(n: int, seconds: float) -> int:
        started.set()
        await asyncio.sleep(seconds)
        finished.append(n)
        return n

    async with app:
        quick = await work.defer(n=1, seconds=0.1)
        slow = await work.defer(n=2, seconds=30)
        async with running_worker(app, concurrency=2):
            await asyncio.wait_for(started.wait(), 10)
            await asyncio.sleep(0.05)
        quick_task, slow_task = await quick.get(), await slow.get()
    assert quick_task.status is TaskStatus.SUCCEEDED
    assert slow_task.status is TaskStatus.PENDING
    assert slow_task.attempts == 0 and slow_task.node_id is None
    assert finished == [1]


async def test_worker_survives_connection_cut(
    database_url: str, sql_conn: psycopg.Connection[Any]
) -> None:
    app = tickbase.App(settings=fast_settings(database_url))
    async with app, running_worker(app) as worker:
        assert await (await app.defer("tickbase.echo", {"n": 1})).result(timeout=10) == {"n": 1}
        reconnects = app.listener.reconnects
        killed = sql_conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
        assert killed is not None and killed[0] >= 2  # pool and listener connections

        async def listener_back() -> bool:
            return app.listener.reconnects > reconnects and app.listener.connected.is_set()

        await wait_until(listener_back, timeout=10, message="listener reconnect")
        handles = await app.enqueue_many(
            [tickbase.EnqueueRequest("tickbase.echo", {"n": i}) for i in range(20)]
        )
        results = [await h.result(timeout=15) for h in handles]
        assert results == [{"n": i} for i in range(20)]
        assert worker.processed >= 21


async def test_handlers_own_their_task(fresh_app: tickbase.App) -> None:
    """asyncio.timeout and current_task inside a handler act on the handler alone."""
    app = fresh_app

    @app.task
    async def uses_its_own_timeout() -> str:
        me = asyncio.current_task()
        try:
            async with asyncio.timeout(0.05):
                await asyncio.sleep(5)
        except TimeoutError:
            pass
        assert asyncio.current_task() is me
        return "handled"

    async with app, running_worker(app):
        first = await uses_its_own_timeout.defer()
        assert await first.result(timeout=10) == "handled"
        # the worker is still fetching after the handler's own timeout fired
        after = await app.defer("tickbase.echo", {"still": "working"})
        assert await after.result(timeout=10) == {"still": "working"}
