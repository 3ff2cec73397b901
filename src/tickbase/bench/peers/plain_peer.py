"""Plain peer: a framework-free ``FOR UPDATE SKIP LOCKED`` loop on raw psycopg.

It is the headroom reference, not a competitor: one tiny table, ``INSERT`` to enqueue,
and a worker that claims up to :data:`CLAIM_LIMIT` rows per statement, runs them, then
marks them done in one statement. A statement-level trigger NOTIFYs on insert so an
idle worker wakes at once; it also re-polls every :data:`IDLE_POLL_S` seconds.

Worker: ``python -m tickbase.bench.peers.plain_peer worker --dsn DSN [--latency-file F]``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterable
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from tickbase.bench.peers._common import LatencyRecorder, chunks, worker_argv, worker_main

MODULE = "tickbase.bench.peers.plain_peer"
CHANNEL = "plain_task"
CLAIM_LIMIT = 100
IDLE_POLL_S = 1.0

SCHEMA = """
CREATE TABLE plain_task (
    id bigserial PRIMARY KEY,
    payload jsonb NOT NULL,
    status text NOT NULL DEFAULT 'queued'
);
-- Lets the claim find queued rows without scanning and sorting the finished ones.
CREATE INDEX plain_task_queued_idx ON plain_task (id) WHERE status = 'queued';
CREATE FUNCTION plain_task_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('plain_task', '');  -- CHANNEL
    RETURN NULL;
END
$$;
CREATE TRIGGER plain_task_inserted AFTER INSERT ON plain_task
    FOR EACH STATEMENT EXECUTE FUNCTION plain_task_notify();
"""

INSERT_ONE = "INSERT INTO plain_task (payload) VALUES (%s)"
INSERT_MANY = "INSERT INTO plain_task (payload) SELECT unnest(%s::jsonb[])"
CLAIM = """
UPDATE plain_task SET status = 'running'
WHERE id IN (
    SELECT id FROM plain_task
    WHERE status = 'queued'
    ORDER BY id
    LIMIT %s
    FOR UPDATE SKIP LOCKED
)
RETURNING id, payload
"""
MARK_DONE = "UPDATE plain_task SET status = 'done' WHERE id = ANY(%s)"
UNFINISHED = "SELECT count(*) FROM plain_task WHERE status <> 'done'"


class PlainAdapter:
    """Benchmark adapter for the plain SKIP LOCKED loop."""

    name = "plain"

    async def install(self, dsn: str) -> None:
        """Create the table, its index and the NOTIFY trigger."""
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            await conn.execute(SCHEMA)

    async def enqueue_single(self, dsn: str, payloads: AsyncIterable[dict[str, Any]]) -> None:
        """One ``INSERT`` per payload."""
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            async for payload in payloads:
                await conn.execute(INSERT_ONE, (Jsonb(payload),))

    async def enqueue_batch(
        self, dsn: str, payloads: list[dict[str, Any]], batch_size: int
    ) -> None:
        """One ``INSERT ... SELECT unnest(...)`` per batch."""
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            for batch in chunks(payloads, batch_size):
                await conn.execute(INSERT_MANY, ([Jsonb(payload) for payload in batch],))

    def worker_argv(self, dsn: str, latency_file: str | None) -> list[str]:
        """Argv of this module's worker."""
        return worker_argv(MODULE, dsn, latency_file)

    async def unfinished(self, conn: psycopg.AsyncConnection[Any]) -> int:
        """Rows not marked done (queued or running)."""
        cur = await conn.execute(UNFINISHED)
        row = await cur.fetchone()
        return int(row[0]) if row else 0


async def run_worker(dsn: str, latency_file: str | None) -> None:
    """Claim, run and complete tasks until the process is terminated."""
    recorder = LatencyRecorder(latency_file) if latency_file else None

    async def handle(payload: Any) -> None:
        now = time.time()
        if recorder is not None:
            recorder.record(now, payload)

    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANNEL)))
        while True:
            cur = await conn.execute(CLAIM, (CLAIM_LIMIT,))
            rows = await cur.fetchall()
            if not rows:
                # Notifications that arrived during the queries above are kept by psycopg
                # and returned here first, so an insert between claim and wait is not lost.
                async for _ in conn.notifies(timeout=IDLE_POLL_S, stop_after=1):
                    pass
                continue
            for _task_id, payload in rows:
                await handle(payload)
            await conn.execute(MARK_DONE, ([task_id for task_id, _ in rows],))


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m tickbase.bench.peers.plain_peer``."""
    return worker_main(MODULE, run_worker, argv)


if __name__ == "__main__":
    raise SystemExit(main())
