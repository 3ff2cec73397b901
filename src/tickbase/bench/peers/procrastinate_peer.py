"""Procrastinate peer: adapter and worker, over Procrastinate's ``PsycopgConnector``.

Worker: ``python -m tickbase.bench.peers.procrastinate_peer worker --dsn DSN
[--latency-file F]``. It runs ``App.run_worker_async(concurrency=10)`` with the default
LISTEN/NOTIFY wake-up and the connector's default connection pool.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterable
from typing import TYPE_CHECKING, Any

import psycopg

from tickbase.bench.peers._common import (
    LatencyRecorder,
    chunks,
    require,
    worker_argv,
    worker_main,
)

if TYPE_CHECKING:
    from procrastinate import App

MODULE = "tickbase.bench.peers.procrastinate_peer"
TASK_NAME = "tickbase_bench_noop"
# Procrastinate runs one job at a time per worker by default; its docs recommend
# concurrency for asynchronous tasks to raise throughput.
WORKER_CONCURRENCY = 10


def _check_installed() -> None:
    require("procrastinate")


def _app(dsn: str) -> App:
    from procrastinate import App, PsycopgConnector

    return App(connector=PsycopgConnector(conninfo=dsn))


class ProcrastinateAdapter:
    """Benchmark adapter for Procrastinate (psycopg connector)."""

    name = "procrastinate"

    def __init__(self) -> None:
        _check_installed()

    async def install(self, dsn: str) -> None:
        """Apply Procrastinate's schema with its own schema manager."""
        async with _app(dsn).open_async() as app:
            await app.schema_manager.apply_schema_async()

    async def enqueue_single(self, dsn: str, payloads: AsyncIterable[dict[str, Any]]) -> None:
        """One ``defer_async`` call per payload (the payload becomes the task kwargs)."""
        async with _app(dsn).open_async() as app:
            deferrer = app.configure_task(TASK_NAME)
            async for payload in payloads:
                await deferrer.defer_async(**payload)

    async def enqueue_batch(
        self, dsn: str, payloads: list[dict[str, Any]], batch_size: int
    ) -> None:
        """One ``batch_defer_async`` call per batch."""
        async with _app(dsn).open_async() as app:
            deferrer = app.configure_task(TASK_NAME)
            for batch in chunks(payloads, batch_size):
                await deferrer.batch_defer_async(*batch)

    def worker_argv(self, dsn: str, latency_file: str | None) -> list[str]:
        """Argv of this module's worker."""
        return worker_argv(MODULE, dsn, latency_file)

    async def unfinished(self, conn: psycopg.AsyncConnection[Any]) -> int:
        """Jobs in ``todo`` or ``doing``; finished jobs stay in the table with another status."""
        cur = await conn.execute(
            "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')"
        )
        row = await cur.fetchone()
        return int(row[0]) if row else 0


async def run_worker(dsn: str, latency_file: str | None) -> None:
    """Run a Procrastinate worker with a no-op task until the process is terminated."""
    recorder = LatencyRecorder(latency_file) if latency_file else None
    app = _app(dsn)

    @app.task(name=TASK_NAME)
    async def noop(**kwargs: Any) -> None:
        now = time.time()
        if recorder is not None:
            recorder.record(now, kwargs)

    async with app.open_async():
        await app.run_worker_async(concurrency=WORKER_CONCURRENCY)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m tickbase.bench.peers.procrastinate_peer``."""
    _check_installed()
    return worker_main(MODULE, run_worker, argv)


if __name__ == "__main__":
    raise SystemExit(main())
