"""The worker: claims tasks in batches, runs their handlers, reports in batches.

:class:`Worker` composes three parts: fetching (:mod:`tickbase.worker.fetcher`:
the fetch loops, claims, waiting for work), running
(:mod:`tickbase.worker.execution`: handlers, timeouts, stops, the drain, the
heartbeat) and reporting (:mod:`tickbase.worker.reporter`).

Overview
    The *primary fetch loop* claims up to half the slots with one statement
    (``FOR UPDATE SKIP LOCKED``) and starts each handler in its own Task; a
    *helper fetch loop* claims too while claims come back full, so one claim is
    in flight while the other batch starts. Outcomes go to an in-memory buffer;
    the *report loop* (:mod:`tickbase.worker.reporter`) writes the whole buffer
    with one statement whenever it is not empty (while one write is in flight,
    the next batch accumulates: group commit, no timer), advancing the
    workflow runs of finished steps in the same transaction. The *heartbeat
    loop* renews the leases of running tasks and stops the ones whose cancel
    was requested or whose lease was lost. (Rescue and reconcile are the
    cluster leader's housekeeping; while no leader is alive, the heartbeat
    rescues tasks whose lease expired itself.)

Limits
    Tasks under a rate limit or a concurrency key, and queues with a
    concurrency limit, are claimed by a second, serialised statement (see
    ``tickbase.queue.limits``), tried when the plain claim leaves slots free:
    at once after new tasks or after one of our limited tasks ended, every
    LIMITED_RETRY_SECONDS (:mod:`tickbase.worker.fetcher`) while all due
    limited tasks are held back.

Waking
    An idle worker sleeps until a NOTIFY on ``tickbase_enqueued`` names one of
    its queues (received on the claiming connection itself), the next delayed
    task is due, or the slow poll interval passes (lost notifications).

Why claims commit asynchronously
    Claims run on connections with ``synchronous_commit = off``: a claim is
    visible to everyone at once, only its flush to disk is deferred (at most a
    fraction of a second). If the database crashes before that flush, the task
    simply is pending again after recovery, and runs; had the flush happened, the
    task would be running with a lease that expires, and would run again all the
    same. So the guarantee is unchanged, and a claim does not wait for a disk
    flush. Enqueues and outcomes stay synchronous: losing one would lose a task
    or a result. (An outcome's flush also flushes every claim before it.)

Failure cases
    A lost database connection makes a loop retry with backoff; outcomes stay
    buffered meanwhile. A killed worker's tasks are rescued by the leader once
    its node row goes three heartbeats without news, or their leases expire,
    whichever comes first. A stopping worker (SIGTERM/SIGINT) stops
    claiming, lets running tasks finish within the grace period, then cancels
    the rest and re-queues them without counting the attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from tickbase.queue.models import Outcome
from tickbase.queue.repository import TaskQueue
from tickbase.service import Service
from tickbase.worker.execution import Execution
from tickbase.worker.fetcher import FETCHERS, Fetcher
from tickbase.worker.registry import Registry
from tickbase.worker.reporter import Reporter

if TYPE_CHECKING:
    from psycopg_pool import AsyncConnectionPool

    from tickbase.db.listener import Listener
    from tickbase.db.pool import AsyncConn
    from tickbase.settings import Settings

__all__ = ["CONCURRENCY_DEFAULT", "FETCHERS", "Worker", "make_node_id"]

logger = logging.getLogger("tickbase.worker")

CONCURRENCY_DEFAULT = 10


def make_node_id() -> str:
    """``host:pid:random``: unique per process, readable in ``tasks.node_id``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Worker(Service):
    """Runs handlers of ``registry`` for tasks of ``queues`` (all queues when empty).

    Example::

        worker = Worker(registry, pool, listener, settings, concurrency=20)
        await worker.start()        # claiming, running, reporting in the background
        await worker.stop()         # drains: running handlers finish or are re-queued
    """

    def __init__(
        self,
        registry: Registry,
        pool: AsyncConnectionPool[AsyncConn],
        listener: Listener,
        settings: Settings,
        *,
        queues: Sequence[str] | None = None,
        concurrency: int = CONCURRENCY_DEFAULT,
        node_id: str | None = None,
        claim_pool: AsyncConnectionPool[AsyncConn] | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        super().__init__()
        self.registry = registry
        self.pool = pool
        self.listener = listener
        self.settings = settings
        self.queues = list(queues) if queues else None
        self.concurrency = concurrency
        self.node_id = node_id or make_node_id()
        self.queue = TaskQueue(pool)
        self.claim_pool = claim_pool or pool
        self.reporter = Reporter(pool, self.node_id, settings, self._on_reported)
        self.execution = Execution(self)
        self.fetcher = Fetcher(self)
        self._unsubscribe: list[Callable[[], None]] = []

    # ---- lifecycle -------------------------------------------------------------

    @property
    def processed(self) -> int:
        """Executions ended (and reported) since the worker started."""
        return self.reporter.processed

    def running_count(self) -> int:
        """Handlers running now (reported in the node's heartbeat)."""
        return self.execution.count()

    def on_stop_requested(self) -> None:
        # Wake the fetch loops wherever they wait, so they see the stop.
        self.fetcher.wake()

    async def serve(self) -> None:
        """Work until stopped; then drain gracefully (running handlers finish
        within the grace period, the rest are re-queued) and return."""
        self._unsubscribe = [self.listener.subscribe("tickbase_cancel", self.execution.on_cancel)]
        await self.listener.start()
        if self.claim_pool is not self.pool:
            await self.claim_pool.open(wait=True)
        reporter = asyncio.create_task(self.reporter.run(), name="tickbase-report")
        heartbeat = asyncio.create_task(self.execution.heartbeat_loop(), name="tickbase-heartbeat")
        self.mark_started()
        logger.info(
            "worker %s started: queues=%s concurrency=%d",
            self.node_id,
            ",".join(self.queues) if self.queues else "*",
            self.concurrency,
        )
        try:
            await self.fetcher.run()
        finally:
            await self.execution.drain()
            heartbeat.cancel()
            self.reporter.close()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            await reporter
            for unsubscribe in self._unsubscribe:
                unsubscribe()
            self.execution.close()
            logger.info("worker %s stopped after %d tasks", self.node_id, self.processed)

    def _on_reported(self, batch: list[Outcome]) -> None:
        self.fetcher.on_reported(batch)
