"""PgQueuer peer: adapter and worker, over PgQueuer's psycopg driver.

Worker: ``python -m tickbase.bench.peers.pgqueuer_peer worker --dsn DSN [--latency-file F]``.
It runs one :class:`pgqueuer.QueueManager` with ``batch_size=100`` on one autocommit
psycopg connection, on uvloop when installed, as ``pgq run`` does.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterable, Coroutine
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from tickbase.bench.peers._common import (
    LatencyRecorder,
    chunks,
    require,
    worker_argv,
    worker_main,
)

if TYPE_CHECKING:
    from pgqueuer import Job, Queries

MODULE = "tickbase.bench.peers.pgqueuer_peer"
ENTRYPOINT = "tickbase_bench_noop"
# PgQueuer's default is 10; a larger batch spreads each dequeue query and each flush of
# the job-status log buffer (sized to the batch) over more jobs.
WORKER_BATCH_SIZE = 100


def _check_installed() -> None:
    require("pgqueuer")


def _queries(conn: psycopg.AsyncConnection[Any]) -> Queries:
    from pgqueuer import PsycopgDriver, Queries

    return Queries(PsycopgDriver(conn))


def _encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode()


def _queue_table() -> sql.Composable:
    from pgqueuer.domain.settings import db_settings

    # Follows PGQUEUER_* settings (prefix, schema) like the rest of PgQueuer does.
    return sql.Identifier(*db_settings().qualified.queue_table.split("."))


class PgQueuerAdapter:
    """Benchmark adapter for PgQueuer (psycopg driver)."""

    name = "pgqueuer"

    def __init__(self) -> None:
        _check_installed()

    async def install(self, dsn: str) -> None:
        """Install PgQueuer's schema with its own installer (``Queries.install``)."""
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            await _queries(conn).install()

    async def enqueue_single(self, dsn: str, payloads: AsyncIterable[dict[str, Any]]) -> None:
        """One ``Queries.enqueue`` call per payload."""
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            queries = _queries(conn)
            async for payload in payloads:
                await queries.enqueue(ENTRYPOINT, _encode(payload))

    async def enqueue_batch(
        self, dsn: str, payloads: list[dict[str, Any]], batch_size: int
    ) -> None:
        """One list-form ``Queries.enqueue`` call per batch."""
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            queries = _queries(conn)
            for batch in chunks(payloads, batch_size):
                await queries.enqueue(
                    [ENTRYPOINT] * len(batch),
                    [_encode(payload) for payload in batch],
                    [0] * len(batch),
                )

    def worker_argv(self, dsn: str, latency_file: str | None) -> list[str]:
        """Argv of this module's worker."""
        return worker_argv(MODULE, dsn, latency_file)

    async def unfinished(self, conn: psycopg.AsyncConnection[Any]) -> int:
        """Queued or picked jobs; PgQueuer deletes a job from its table once done."""
        query = sql.SQL("SELECT count(*) FROM {} WHERE status IN ('queued', 'picked')").format(
            _queue_table()
        )
        cur = await conn.execute(query)
        row = await cur.fetchone()
        return int(row[0]) if row else 0


async def run_worker(dsn: str, latency_file: str | None) -> None:
    """Run a PgQueuer worker with a no-op entrypoint until the process is terminated."""
    from pgqueuer import QueueManager

    recorder = LatencyRecorder(latency_file) if latency_file else None
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        manager = QueueManager(_queries(conn))

        @manager.entrypoint(ENTRYPOINT)
        async def noop(job: Job) -> None:
            now = time.time()
            if recorder is not None and job.payload is not None:
                recorder.record(now, json.loads(job.payload))

        await manager.run(batch_size=WORKER_BATCH_SIZE)


def _uvloop_runner() -> Any:
    try:
        import uvloop
    except ImportError:
        return None

    def run(coro: Coroutine[Any, Any, None]) -> None:
        uvloop.run(coro)

    return run


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m tickbase.bench.peers.pgqueuer_peer``."""
    _check_installed()
    return worker_main(MODULE, run_worker, argv, runner=_uvloop_runner())


if __name__ == "__main__":
    raise SystemExit(main())
