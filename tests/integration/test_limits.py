"""Cluster-wide limits against a real PostgreSQL: queue concurrency, rate limits,
concurrency keys. Several workers (each with its own node id and connections)
compete in this process; what they did is read back from the task rows."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest

import tickbase
from tests.conftest import fast_settings
from tests.support.waiting import wait_until
from tickbase.errors import ConfigurationError, InvalidTask
from tickbase.worker.worker import Worker


@contextlib.asynccontextmanager
async def workers(app: tickbase.App, count: int, **kwargs: Any) -> AsyncIterator[None]:
    """``count`` workers of ``app`` with distinct node ids, as separate nodes would be."""
    started = []
    for n in range(count):
        worker = Worker(
            app.registry,
            app.pool,
            app.listener,
            app.settings,
            node_id=f"{app.node_id}-{n}",
            **kwargs,
        )
        started.append((worker, asyncio.create_task(worker.run())))
    try:
        for worker, _ in started:
            await asyncio.wait_for(worker.started.wait(), 10)
        yield
    finally:
        for worker, _ in started:
            worker.request_stop()
        await asyncio.wait_for(asyncio.gather(*(task for _, task in started)), 20)


def spans(conn: psycopg.Connection[Any], task_type: str) -> list[tuple[Any, ...]]:
    """(id, key, started_at, finished_at, status) of every task of a type, by id."""
    return conn.execute(
        "SELECT id, concurrency_key, started_at, finished_at, status FROM tickbase.tasks"
        " WHERE task_type = %s ORDER BY id",
        (task_type,),
    ).fetchall()


def peak_overlap(intervals: list[tuple[datetime, datetime]]) -> int:
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    peak = current = 0
    for _, step in edges:
        current += step
        peak = max(peak, current)
    return peak


async def all_final(app: tickbase.App, count: int, timeout: float = 30) -> None:
    async def done() -> bool:
        rows = await app.queue.counts()
        return sum(n for _, status, n in rows if status in ("succeeded", "failed")) >= count

    await wait_until(done, timeout=timeout, message=f"{count} tasks finished")


# ---- definition-time errors ----------------------------------------------------


def test_bad_limits_are_refused_at_definition() -> None:
    app = tickbase.App(database_url="postgresql://unused")
    with pytest.raises(ConfigurationError, match="'ten per minute' does not parse"):

        @app.task(name="t.bad_rate", rate_limit="ten per minute")
        async def bad_rate() -> None: ...

    with pytest.raises(ConfigurationError, match="concurrency must be an integer >= 1, got 0"):
        app.limit_queue("q", concurrency=0)
    with pytest.raises(ConfigurationError, match="concurrency_limit must be an integer >= 1"):

        @app.task(name="t.bad_k", concurrency_key="{symbol}", concurrency_limit=0)
        async def bad_k(symbol: str) -> None: ...

    with pytest.raises(ConfigurationError, match="plain \\{field\\} placeholders"):

        @app.task(name="t.bad_template", concurrency_key="{symbol:>5}")
        async def bad_template(symbol: str) -> None: ...

    assert "t.bad_rate" not in app.registry and "t.bad_k" not in app.registry


async def test_bad_runtime_limits_change_nothing(app: tickbase.App) -> None:
    await app.limits.set_queue_concurrency("q", 3)
    with pytest.raises(ConfigurationError, match="got 0"):
        await app.limits.set_queue_concurrency("q", 0)
    with pytest.raises(ConfigurationError, match="invalid queue name"):
        await app.limits.set_queue_concurrency("bad queue!", 1)
    assert [(r["queue"], r["concurrency"]) for r in await app.limits.queue_limits()] == [("q", 3)]
    with pytest.raises(InvalidTask, match="concurrency_limit"):
        await app.defer("tickbase.noop", concurrency_key="k", concurrency_limit=0)


# ---- keys formatted in the database --------------------------------------------


async def test_key_template_is_applied_to_every_producer(
    database_url: str, sql_conn: psycopg.Connection[Any]
) -> None:
    app = tickbase.App(settings=fast_settings(database_url))

    @app.task(name="t.keyed", concurrency_key="{symbol}:{interval}", concurrency_limit=2)
    async def keyed(symbol: str, interval: str = "") -> None: ...

    async with app:
        await keyed.defer(symbol="BTCUSDT", interval="1h")
        await keyed.defer_many([{"symbol": "ETHUSDT", "interval": "4h"}, {"symbol": "X"}])
        await keyed.defer(symbol="ESZ5", concurrency_key="explicit")
    # a producer that knows nothing of the template (plain SQL) is held to it too
    sql_conn.execute(
        "INSERT INTO tickbase.tasks (task_type, payload) VALUES ('t.keyed', %s)",
        ('{"symbol": "SOL", "interval": 15}',),
    )
    rows = sql_conn.execute(
        "SELECT concurrency_key, concurrency_limit, limited FROM tickbase.tasks ORDER BY id"
    ).fetchall()
    assert rows == [
        ("BTCUSDT:1h", 2, True),
        ("ETHUSDT:4h", 2, True),
        ("X:", 2, True),
        ("explicit", 2, True),
        ("SOL:15", 2, True),
    ]


# ---- queue concurrency ----------------------------------------------------------


async def test_queue_concurrency_holds_across_workers(
    database_url: str, sql_conn: psycopg.Connection[Any]
) -> None:
    app = tickbase.App(settings=fast_settings(database_url))
    app.limit_queue("limited", concurrency=2)

    @app.task(name="t.q_sleep", queue="limited")
    async def q_sleep(n: int) -> int:
        await asyncio.sleep(0.2)
        return n

    @app.task(name="t.free")
    async def free(n: int) -> int:
        return n

    async with app:
        await q_sleep.defer_many([{"n": n} for n in range(12)])
        await free.defer_many([{"n": n} for n in range(20)])
        async with workers(app, 3, concurrency=10):
            await all_final(app, 32)
    rows = spans(sql_conn, "t.q_sleep")
    assert all(row[4] == "succeeded" for row in rows)
    assert peak_overlap([(row[2], row[3]) for row in rows]) == 2
    # the plain queue was not held back behind the limited one
    free_rows = spans(sql_conn, "t.free")
    assert max(r[3] for r in free_rows) < max(r[3] for r in rows)


# ---- rate limits ---------------------------------------------------------------


async def test_rate_limit_sliding_window_across_workers(
    database_url: str, sql_conn: psycopg.Connection[Any]
) -> None:
    app = tickbase.App(settings=fast_settings(database_url))

    @app.task(name="t.rated", rate_limit="4/1.5s")
    async def rated(n: int) -> int:
        return n

    async with app:
        await rated.defer_many([{"n": n} for n in range(10)])
        async with workers(app, 3, concurrency=10):
            await all_final(app, 10, timeout=20)
    starts = sorted(row[2] for row in spans(sql_conn, "t.rated"))
    assert len(starts) == 10
    window = timedelta(seconds=1.5)
    for i, start in enumerate(starts):
        in_window = [s for s in starts[i:] if s - start < window]
        assert len(in_window) <= 4, (start, in_window)
    # the excess waited (never dropped or failed): 10 starts at 4 per 1.5 s span >= 3 s
    assert starts[-1] - starts[0] >= timedelta(seconds=3.0)
    statuses = {row[4] for row in spans(sql_conn, "t.rated")}
    assert statuses == {"succeeded"}


async def test_rate_limit_defined_later_holds_tasks_already_waiting(
    database_url: str, sql_conn: psycopg.Connection[Any]
) -> None:
    producer = tickbase.App(settings=fast_settings(database_url))
    async with producer:
        await producer.enqueue_many([tickbase.EnqueueRequest("t.late", {"n": n}) for n in range(6)])
    assert sql_conn.execute("SELECT bool_or(limited) FROM tickbase.tasks").fetchone() == (False,)

    app = tickbase.App(settings=fast_settings(database_url))

    @app.task(name="t.late", rate_limit="3/2s")
    async def late(n: int) -> int:
        return n

    async with app:
        assert await app.sync_limits() == []  # already stored when the app opened
        assert sql_conn.execute("SELECT bool_and(limited) FROM tickbase.tasks").fetchone() == (
            True,
        )
        async with workers(app, 2, concurrency=10):
            await all_final(app, 6, timeout=20)
    starts = sorted(row[2] for row in spans(sql_conn, "t.late"))
    assert starts[3] - starts[0] >= timedelta(seconds=2.0)


# ---- concurrency keys ---------------------------------------------------------


async def test_concurrency_key_serial_in_enqueue_order(
    database_url: str, sql_conn: psycopg.Connection[Any]
) -> None:
    app = tickbase.App(settings=fast_settings(database_url))

    @app.task(name="t.per_symbol", concurrency_key="{symbol}")
    async def per_symbol(symbol: str, n: int) -> int:
        await asyncio.sleep(0.05)
        return n

    @app.task(name="t.other")
    async def other() -> None: ...

    async with app:
        # one deep key enqueued first must not starve the others
        await per_symbol.defer_many([{"symbol": "DEEP", "n": n} for n in range(10)])
        await per_symbol.defer_many(
            [{"symbol": symbol, "n": n} for n in range(5) for symbol in ("A", "B", "C")]
        )
        await other.defer()
        async with workers(app, 3, concurrency=10):
            await all_final(app, 26)
    rows = spans(sql_conn, "t.per_symbol")
    by_key: dict[str, list[tuple[Any, ...]]] = {}
    for row in rows:
        by_key.setdefault(row[1], []).append(row)
    for key, key_rows in by_key.items():
        # in enqueue (id) order, each starting after the previous one finished
        for before, after in itertools.pairwise(key_rows):
            assert after[2] >= before[3], (key, before, after)
    # different keys did run at the same time
    first_of = {key: key_rows[0][2] for key, key_rows in by_key.items()}
    assert first_of["A"] < by_key["DEEP"][-1][2]


async def test_concurrency_key_limit_two(
    database_url: str, sql_conn: psycopg.Connection[Any]
) -> None:
    app = tickbase.App(settings=fast_settings(database_url))

    @app.task(name="t.pairs", concurrency_key="{symbol}", concurrency_limit=2)
    async def pairs(symbol: str, n: int) -> int:
        await asyncio.sleep(0.15)
        return n

    async with app:
        await pairs.defer_many([{"symbol": "S", "n": n} for n in range(8)])
        async with workers(app, 2, concurrency=10):
            await all_final(app, 8)
    rows = spans(sql_conn, "t.pairs")
    assert peak_overlap([(row[2], row[3]) for row in rows]) == 2


async def test_retrying_task_keeps_its_place_in_its_key(
    database_url: str, sql_conn: psycopg.Connection[Any]
) -> None:
    app = tickbase.App(settings=fast_settings(database_url))
    calls: list[str] = []

    @app.task(name="t.ordered", concurrency_key="{symbol}", retries=2, retry_delay=0.2)
    async def ordered(symbol: str, n: int) -> int:
        calls.append(f"{n}")
        if n == 0 and calls.count("0") == 1:
            raise RuntimeError("first attempt fails")
        return n

    async with app:
        await ordered.defer_many([{"symbol": "S", "n": n} for n in range(3)])
        async with workers(app, 2, concurrency=5):
            await all_final(app, 3)
    assert calls == ["0", "0", "1", "2"]
