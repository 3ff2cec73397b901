"""tickbase under the queue benchmark: the same workloads as every peer.

The drain and latency workers are the real ``tickbase worker`` command (CLI
start-up included in the drain time), with this module as ``--app`` so the
latency task type is known. The database URL travels in the environment, not
on the command line, so ``ps`` never shows it.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import AsyncIterable
from typing import Any

import psycopg

from tickbase.app import App
from tickbase.db.migrate import migrate
from tickbase.db.pool import connect
from tickbase.queue.models import EnqueueRequest
from tickbase.queue.repository import Q as QUEUE_QUERIES

LATENCY_FILE_ENV = "TICKBASE_BENCH_LATENCY_FILE"
LATENCY_TASK = "tickbase.bench.latency"
NOOP_TASK = "tickbase.noop"

bench_app = App()
_latency_file: Any = None


@bench_app.task(name=LATENCY_TASK)
async def record_latency(t: float, **_: Any) -> None:
    """Append enqueue-to-start seconds to the file named by the environment."""
    now = time.time()
    global _latency_file
    if _latency_file is None:
        _latency_file = open(os.environ[LATENCY_FILE_ENV], "a", buffering=1)  # noqa: SIM115, ASYNC230  (once per process)
    _latency_file.write(f"{now - t!r}\n")


@bench_app.task(name="tickbase.bench.sleep", retries=3)
async def sleep(seconds: float) -> None:
    """Hold a worker slot (the rescue benchmark kills the worker meanwhile)."""
    import asyncio

    await asyncio.sleep(seconds)


class TickbaseAdapter:
    """The :class:`~tickbase.bench.harness.QueueAdapter` of tickbase itself."""

    name = "tickbase"

    def __init__(self, concurrency: int = 100) -> None:
        self.concurrency = concurrency

    async def install(self, dsn: str) -> None:
        conn = await connect(dsn)
        try:
            await migrate(conn)
        finally:
            await conn.close()

    async def enqueue_single(self, dsn: str, payloads: AsyncIterable[dict[str, Any]]) -> None:
        app = App(dsn)
        await app.open(apply_migrations=False)
        try:
            async for payload in payloads:
                task_type = LATENCY_TASK if "t" in payload else NOOP_TASK
                await app.enqueue_many([EnqueueRequest(task_type, payload)])
        finally:
            await app.close()

    async def enqueue_batch(
        self, dsn: str, payloads: list[dict[str, Any]], batch_size: int
    ) -> None:
        app = App(dsn)
        await app.open(apply_migrations=False)
        try:
            for start in range(0, len(payloads), batch_size):
                chunk = payloads[start : start + batch_size]
                await app.enqueue_many([EnqueueRequest(NOOP_TASK, p) for p in chunk])
        finally:
            await app.close()

    def worker_argv(self, dsn: str, latency_file: str | None) -> list[str]:
        env = [f"DATABASE_URL={dsn}"]
        if latency_file is not None:
            env.append(f"{LATENCY_FILE_ENV}={latency_file}")
        return [
            "env",
            *env,
            sys.executable,
            "-m",
            "tickbase",
            "worker",
            "--app",
            f"{__name__}:bench_app",
            "--concurrency",
            str(self.concurrency),
        ]

    async def unfinished(self, conn: psycopg.AsyncConnection[Any]) -> int:
        cursor = await conn.execute(QUEUE_QUERIES["task_count_unfinished"])
        row = await cursor.fetchone()
        return int(row[0]) if row else 0
