"""``tickbase bench workflow``: what orchestration costs per step.

Two shapes of ``steps`` no-op steps, each run in a fresh database by one
in-process worker, against the same number of plain tasks:

* chain — each step after the previous one. Compared with plain tasks run one
  after another (enqueue, await the result, enqueue the next), the figure is
  the extra time per step: ``chain_overhead_ms``.
* fan-out — every step independent (parallel mode, no max_parallel).
  Compared with the same number of plain tasks enqueued in one batch and
  drained, the figure is the throughput ratio: ``fanout_ratio``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from tickbase.app import App
from tickbase.bench.harness import migrated_database, print_figures
from tickbase.db.pool import resolve_database_url
from tickbase.queue.models import EnqueueRequest
from tickbase.settings import load_settings
from tickbase.workflows.engine import Q as WORKFLOW_QUERIES

CONCURRENCY = 100


async def run_workflow_command(
    *, database_url: str | None, steps: int, as_json: bool
) -> dict[str, float]:
    """Measure and print (Rich table, or one JSON line with ``--json``)."""
    settings = load_settings(database_url=database_url)
    server, _ = await asyncio.to_thread(resolve_database_url, settings, start=False)
    figures: dict[str, float] = {"steps": float(steps)}
    figures["plain_sequential_ms"] = await _measured(
        server, "seq", lambda app: _plain_sequential(app, steps)
    )
    figures["chain_step_ms"] = await _measured(server, "chain", lambda app: _chain(app, steps))
    figures["chain_overhead_ms"] = figures["chain_step_ms"] - figures["plain_sequential_ms"]
    plain_seconds = await _measured(server, "drain", lambda app: _plain_batch(app, steps))
    fanout_seconds = await _measured(server, "fanout", lambda app: _fan_out(app, steps))
    figures["plain_per_s"] = steps / plain_seconds
    figures["fanout_per_s"] = steps / fanout_seconds
    figures["fanout_ratio"] = (
        figures["plain_per_s"] and figures["fanout_per_s"] / figures["plain_per_s"]
    )
    if as_json:
        import json

        print(json.dumps({"tickbase": figures}), flush=True)
    else:
        print_figures(
            f"Workflow benchmark ({steps} no-op steps, one in-process worker)", figures, 3
        )
        print("targets: chain_overhead_ms <= 5, fanout_ratio >= 0.5")
    return figures


async def _measured(server: str, label: str, body: Callable[[App], Awaitable[float]]) -> float:
    async with migrated_database(server, f"wf_{label}") as dsn:
        app = App(dsn)
        await app.open(apply_migrations=False)
        worker = app.worker(concurrency=CONCURRENCY)
        await worker.start()
        try:
            return await body(app)
        finally:
            await worker.stop()
            await app.close()


async def _plain_sequential(app: App, steps: int) -> float:
    started = time.perf_counter()
    for _ in range(steps):
        [handle] = await app.enqueue_many([EnqueueRequest("tickbase.noop")])
        await handle.result(timeout=30)
    return (time.perf_counter() - started) * 1000 / steps


async def _chain(app: App, steps: int) -> float:
    wf = app.workflow("bench-chain", mode="serial")
    wf.step("s0", "tickbase.noop")
    for n in range(1, steps):
        wf.step(f"s{n}", "tickbase.noop", after=[f"s{n - 1}"])
    await wf.save()
    started = time.perf_counter()
    run = await app.workflows.start("bench-chain")
    await _until(lambda: _run_status(app, run.id), "succeeded")
    return (time.perf_counter() - started) * 1000 / steps


async def _plain_batch(app: App, steps: int) -> float:
    started = time.perf_counter()
    handles = await app.enqueue_many([EnqueueRequest("tickbase.noop") for _ in range(steps)])
    await _until(lambda: app.queue.count_unfinished(), 0)
    del handles
    return time.perf_counter() - started


async def _fan_out(app: App, steps: int) -> float:
    wf = app.workflow("bench-fanout", mode="parallel")
    for n in range(steps):
        wf.step(f"s{n}", "tickbase.noop")
    await wf.save()
    started = time.perf_counter()
    run = await app.workflows.start("bench-fanout")
    await _until(lambda: _run_status(app, run.id), "succeeded")
    return time.perf_counter() - started


async def _run_status(app: App, run_id: int) -> str:
    """The run's status by one light query (polled like the plain drain's count)."""
    async with app.pool.connection() as conn:
        cursor = await conn.execute(WORKFLOW_QUERIES["workflow_run_get"], {"id": run_id})
        row = await cursor.fetchone()
    status = str(row[6]) if row else "missing"
    if status in ("failed", "cancelled", "missing"):
        raise RuntimeError(f"benchmark run {run_id} ended {status}")
    return status


async def _until(value: Callable[[], Awaitable[Any]], expected: Any) -> None:
    while await value() != expected:  # noqa: ASYNC110  (polling the database, as the harness does)
        await asyncio.sleep(0.005)
