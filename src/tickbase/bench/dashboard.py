"""``tickbase bench dashboard``: each page's data requests at millions of rows, and the
database load of many open dashboards.

Workload
    In a fresh database (created on the resolved server, migrated, dropped
    afterwards) a synthetic week of a busy cluster is loaded
    (``dashboard_queries.sql``: ``--rows`` tasks, default 5,000,000, and
    ``--schedules`` cron schedules, default 10,000), then ``ANALYZE``. A
    gateway runs in this process over that database (no worker: the waiting
    tasks stay waiting) with an admin token.

Figures
    * per page, the data requests its script sends, in turn, timed together
      from the client (HTTP over 127.0.0.1): ``<page>_p50_ms``,
      ``<page>_p95_ms`` over ``--samples`` loads (nearest rank). The overview
      is measured uncached (its figures are shared for two seconds between
      dashboards; every sample here pays for the read);
    * ``html_p50_ms`` / ``html_p95_ms``: the shell and its main module;
    * ``db_tx_per_s_1`` and ``db_tx_per_s_20``: transactions per second the
      database committed while 1, then 20, dashboards were open on the live
      channels (``tasks`` and ``stats``) and a producer enqueued 20 tasks a
      second; the two should be about equal (one reader per gateway process).

Like every benchmark here it prints figures and never fails on them; the
issue's target is every page's p95 < 300 ms at 5 million rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import websockets

from tickbase.bench.harness import BenchError, migrated_database, percentile
from tickbase.db.sqlfile import load_queries

Q = load_queries("tickbase.bench", "dashboard_queries.sql")
SUBJECT = "tickbase"
LOAD_CHUNK = 250_000
LOAD_SPAN = timedelta(days=7)
WAITING_SHARE = 0.01
OBSERVE_SECONDS = 10.0
PRODUCER_PER_S = 20

# The data requests each page's script sends (see dashboard/static/pages/).
PAGES: dict[str, list[str]] = {
    "overview": ["/api/v1/dashboard/overview"],
    "tasks": ["/api/v1/tasks?limit=50"],
    "tasks_failed": ["/api/v1/tasks?status=failed&limit=50"],
    "tasks_json": ["/api/v1/tasks?where=payload.symbol%20%3D%20SYM7&limit=50"],
    "tasks_deep": ["/api/v1/tasks?cursor={middle_id}&limit=50"],
    "task": ["/api/v1/tasks/{task_id}", "/api/v1/tasks/{task_id}/events"],
    "schedules": ["/api/v1/schedules?limit=100"],
    "schedule": [
        "/api/v1/schedules/{schedule}",
        "/api/v1/schedules/{schedule}/stats",
        "/api/v1/schedules/{schedule}/executions",
    ],
    "workflows": ["/api/v1/workflows", "/api/v1/runs"],
    "nodes": ["/api/v1/nodes", "/api/v1/cluster/leader"],
    "alerts": ["/api/v1/alerts", "/api/v1/alert-rules", "/api/v1/alert-webhooks"],
    "limits": ["/api/v1/limits", "/api/v1/limits/concurrency-keys"],
    "market": ["/api/v1/marketdata/series", "/api/v1/marketdata/integrity"],
    "html": ["/", "/ui/app.js"],
}


async def run_dashboard_command(
    *, database_url: str | None, rows: int, schedules: int, samples: int, as_json: bool
) -> dict[str, float]:
    """Run the dashboard benchmark and print it (a Rich table, or one JSON line)."""
    from tickbase.db.pool import resolve_database_url
    from tickbase.settings import load_settings

    if rows < 1000 or schedules < 1 or samples < 2:
        raise BenchError("need --rows >= 1000, --schedules >= 1 and --samples >= 2")
    settings = load_settings(database_url=database_url)
    server_dsn, _ = await asyncio.to_thread(resolve_database_url, settings, start=False)

    def progress(line: str) -> None:
        if not as_json:
            print(line, file=sys.stderr, flush=True)

    figures = await run_dashboard_bench(server_dsn, rows, schedules, samples, progress)
    if as_json:
        print(json.dumps({SUBJECT: figures}), flush=True)
    else:
        from tickbase.bench.harness import print_figures

        print_figures(f"Dashboard benchmark ({rows:,} tasks, {schedules:,} schedules)", figures)
    return figures


async def run_dashboard_bench(
    server_dsn: str,
    rows: int,
    schedules: int,
    samples: int,
    progress: Callable[[str], None],
) -> dict[str, float]:
    """Load, serve, measure (see the module); ``server_dsn`` may ``CREATE DATABASE``."""
    async with migrated_database(server_dsn, "dashboard") as dsn:
        started = time.monotonic()
        await _load(dsn, rows, schedules, progress)
        figures: dict[str, float] = {
            "rows": float(rows),
            "schedules": float(schedules),
            "load_seconds": time.monotonic() - started,
        }
        async with _gateway(dsn) as (base, token, viewers, api):
            api.state.feed.stats_every = 0.0  # every overview sample pays for its read
            api.state.figures._cached.max_age = 0.0
            values = {
                "middle_id": str(rows // 2),
                "task_id": str(rows // 3),
                "schedule": "bench-schedule-00001",
            }
            headers = {"Authorization": f"Bearer {token}"}
            async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as http:
                for page, paths in PAGES.items():
                    progress(f"page {page}: {samples} loads")
                    timings = await _page_timings(
                        http, [p.format(**values) for p in paths], samples
                    )
                    figures[f"{page}_p50_ms"] = percentile(timings, 50)
                    figures[f"{page}_p95_ms"] = percentile(timings, 95)
            api.state.feed.stats_every = 2.0
            api.state.figures._cached.max_age = 1.0
            for sessions in (1, 20):
                progress(f"{sessions} open dashboards for {OBSERVE_SECONDS:g} s")
                figures[f"db_tx_per_s_{sessions}"] = await _database_load(
                    dsn, base, viewers[:sessions]
                )
    return figures


async def _load(dsn: str, rows: int, schedules: int, progress: Callable[[str], None]) -> None:
    start = datetime.now(UTC) - LOAD_SPAN
    step = LOAD_SPAN / rows
    waiting_after = int(rows * (1 - WAITING_SHARE))
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        for first in range(0, rows, LOAD_CHUNK):
            count = min(LOAD_CHUNK, rows - first)
            await conn.execute(
                Q["dashboard_load_tasks"],
                {
                    "first_id": first,
                    "count": count,
                    "start": start,
                    "step": step,
                    "waiting_after": waiting_after,
                },
            )
            progress(f"loaded {first + count:,} of {rows:,} tasks")
        await conn.execute(Q["dashboard_load_sequence"])
        await conn.execute(Q["dashboard_load_schedules"], {"count": schedules})
        progress("ANALYZE")
        await conn.execute("ANALYZE")


@contextlib.asynccontextmanager
async def _gateway(dsn: str) -> AsyncIterator[tuple[str, str, list[str], Any]]:
    """A gateway over ``dsn``: its URL, an admin token, 20 viewer tokens (one per
    open dashboard: a user may hold 3 connections), and its ASGI app."""
    import tickbase
    from tickbase.bench.gateway_process import free_port
    from tickbase.gateway.app import create_gateway, serve
    from tickbase.gateway.auth import TokenStore
    from tickbase.settings import load_settings

    port = free_port()
    app = tickbase.App(settings=load_settings(database_url=dsn))
    async with app:
        tokens = TokenStore(app.pool)
        token = (await tokens.create("admin", name="bench-admin")).token
        viewers = [
            (await tokens.create("viewer", name=f"bench-viewer-{i}")).token for i in range(20)
        ]
        api = create_gateway(app)
        stop, started = asyncio.Event(), asyncio.Event()
        server = asyncio.create_task(serve(api, port=port, stop=stop, started=started))
        try:
            async with asyncio.timeout(30):
                await started.wait()
            yield f"http://127.0.0.1:{port}", token, viewers, api
        finally:
            stop.set()
            await asyncio.wait_for(server, 30)


async def _page_timings(http: httpx.AsyncClient, paths: list[str], samples: int) -> list[float]:
    for path in paths:  # warm: the first request of a kind pays for imports and plans
        answer = await http.get(path)
        if answer.status_code != 200:
            raise BenchError(f"GET {path}: {answer.status_code} {answer.text[:200]}")
    timings = []
    for _ in range(samples):
        began = time.perf_counter()
        for path in paths:
            (await http.get(path)).raise_for_status()
        timings.append((time.perf_counter() - began) * 1000)
    return timings


async def _database_load(dsn: str, base: str, viewers: list[str]) -> float:
    """Transactions per second committed while one dashboard per viewer token watches live."""
    import tickbase
    from tickbase.settings import load_settings

    url = base.replace("http://", "ws://") + "/ws"
    async with contextlib.AsyncExitStack() as stack:
        for index, token in enumerate(viewers):
            ws = await stack.enter_async_context(
                websockets.connect(url, additional_headers={"Authorization": f"Bearer {token}"})
            )
            for channel in ("tasks", "stats"):
                await ws.send(
                    json.dumps(
                        {
                            "type": "request",
                            "requestId": f"s{index}-{channel}",
                            "action": "subscribe",
                            "params": {"channel": channel},
                        }
                    )
                )
            stack.push_async_callback(_drain, ws)
        producer = tickbase.App(settings=load_settings(database_url=dsn))
        await stack.enter_async_context(producer)
        await asyncio.sleep(1.0)  # subscriptions in place, first beats read
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            before = await _transactions(conn)
            began = time.monotonic()
            while time.monotonic() - began < OBSERVE_SECONDS:
                await producer.defer("bench.type0", {"symbol": "SYM1"})
                await asyncio.sleep(1 / PRODUCER_PER_S)
            elapsed = time.monotonic() - began
            after = await _transactions(conn)
    return (after - before) / elapsed


async def _drain(ws: Any) -> None:
    with contextlib.suppress(Exception):
        await ws.close()


async def _transactions(conn: psycopg.AsyncConnection[Any]) -> int:
    cursor = await conn.execute(Q["dashboard_transactions"])
    row = await cursor.fetchone()
    return int(row[0]) if row else 0


__all__ = ["PAGES", "run_dashboard_bench", "run_dashboard_command"]
