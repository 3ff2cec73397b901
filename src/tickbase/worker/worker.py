"""The worker: claims tasks in batches, runs their handlers, reports in batches.

Overview
    The *primary fetch loop* claims up to half the slots with one statement
    (``FOR UPDATE SKIP LOCKED``) and starts each handler in its own Task; a
    *helper fetch loop* claims too while claims come back full, so one claim is
    in flight while the other batch starts. Outcomes go to an in-memory buffer;
    the *report loop* (:mod:`tickbase.worker.reporter`) writes the whole buffer
    with one statement whenever it is not empty (while one write is in flight, the next batch accumulates: group
    commit, no timer), advancing the workflow runs of finished steps in the same
    transaction. The *heartbeat loop* renews the leases of running tasks and
    stops the ones whose cancel was requested or whose lease was lost. (Rescue
    and reconcile are the cluster leader's housekeeping; while no leader is
    alive, the heartbeat rescues tasks whose lease expired itself.)

Limits
    Tasks under a rate limit or a concurrency key, and queues with a
    concurrency limit, are claimed by a second, serialised statement (see
    ``tickbase.queue.limits``), tried when the plain claim leaves slots free:
    at once after new tasks or after one of our limited tasks ended, every
    LIMITED_RETRY_SECONDS while all due limited tasks are held back.

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
import functools
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import psycopg

from tickbase.queue.models import ClaimedTask, Outcome
from tickbase.queue.repository import TaskQueue
from tickbase.service import Backoff, Service
from tickbase.worker.context import TaskContext
from tickbase.worker.registry import Registry
from tickbase.worker.reporter import RETRY_BACKOFF_MAX, Reporter
from tickbase.workflows.engine import reconcile

if TYPE_CHECKING:
    from psycopg_pool import AsyncConnectionPool

    from tickbase.db.listener import Listener
    from tickbase.db.pool import AsyncConn
    from tickbase.settings import Settings

logger = logging.getLogger("tickbase.worker")

CONCURRENCY_DEFAULT = 10
FETCHERS = 2
# Seconds between limited claims while every due limited task is held back
# (a rate window to slide, a key or a queue slot to free on another node).
LIMITED_RETRY_SECONDS = 0.25


def _context(task: ClaimedTask) -> TaskContext:
    return TaskContext(
        task_id=task.id,
        attempt=task.attempt,
        max_attempts=task.max_attempts,
        workflow_run_id=task.workflow_run_id,
        step=task.step,
        inputs=task.inputs or {},
    )


def make_node_id() -> str:
    """``host:pid:random``: unique per process, readable in ``tasks.node_id``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass
class _Running:
    claimed: ClaimedTask
    task: asyncio.Task[None]
    stop_reason: str | None = None  # "cancel" | "lost" | "shutdown"


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
        self.executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="tickbase")
        self.reporter = Reporter(pool, self.node_id, settings, self._on_reported)
        self._running: dict[int, _Running] = {}
        self._reserved = 0  # slots promised to claims in flight
        self._limited: set[int] = set()  # running tasks claimed under a limit
        # When to try the limited claim again (monotonic): at once after new
        # tasks or a finished limited task, a moment later while every due
        # limited task is held back by its limits, at the poll otherwise.
        self._limited_retry_at = 0.0
        self._limited_wake = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._busy = asyncio.Event()
        self._unsubscribe: list[Any] = []

    # ---- lifecycle -------------------------------------------------------------

    @property
    def processed(self) -> int:
        """Executions ended (and reported) since the worker started."""
        return self.reporter.processed

    def running_count(self) -> int:
        """Handlers running now (reported in the node's heartbeat)."""
        return len(self._running)

    def on_stop_requested(self) -> None:
        # Wake the fetch loops wherever they wait, so they see the stop.
        self._slot_freed.set()
        self._busy.set()

    async def serve(self) -> None:
        """Work until stopped; then drain gracefully (running handlers finish
        within the grace period, the rest are re-queued) and return."""
        self._unsubscribe = [self.listener.subscribe("tickbase_cancel", self._on_cancel)]
        await self.listener.start()
        if self.claim_pool is not self.pool:
            await self.claim_pool.open(wait=True)
        reporter = asyncio.create_task(self.reporter.run(), name="tickbase-report")
        heartbeat = asyncio.create_task(self._heartbeat_loop(), name="tickbase-heartbeat")
        self.mark_started()
        logger.info(
            "worker %s started: queues=%s concurrency=%d",
            self.node_id,
            ",".join(self.queues) if self.queues else "*",
            self.concurrency,
        )
        try:
            # Two fetch loops (FETCHERS), each claiming up to half the slots: one
            # claim is in flight while the other loop's batch runs, so the
            # database and the handlers work at the same time.
            await asyncio.gather(self._primary_loop(), self._helper_loop())
        finally:
            await self._drain()
            heartbeat.cancel()
            self.reporter.close()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            await reporter
            for unsubscribe in self._unsubscribe:
                unsubscribe()
            self.executor.shutdown(wait=False, cancel_futures=True)
            logger.info("worker %s stopped after %d tasks", self.node_id, self.processed)

    async def _drain(self) -> None:
        if not self._running:
            return
        logger.info(
            "stopping: waiting up to %.1fs for %d running tasks",
            self.settings.shutdown_grace,
            len(self._running),
        )
        waiting = [entry.task for entry in self._running.values()]
        _, still_running = await asyncio.wait(waiting, timeout=self.settings.shutdown_grace)
        if still_running:
            logger.warning(
                "re-queueing %d tasks still running after the grace period", len(still_running)
            )
            for entry in list(self._running.values()):
                entry.stop_reason = entry.stop_reason or "shutdown"
                entry.task.cancel()
            await asyncio.wait(still_running)

    # ---- fetching --------------------------------------------------------------

    def _free_slots(self) -> int:
        return min(
            self.concurrency - len(self._running) - self._reserved,
            -(-self.concurrency // FETCHERS),
        )

    async def _claim(
        self, conn: AsyncConn, free: int, *, limited: bool = False
    ) -> list[ClaimedTask] | None:
        """One claim statement (plain or limited) with ``free`` slots reserved meanwhile."""
        self._reserved += free
        try:
            claim = self.queue.claim_limited if limited else self.queue.claim
            return await claim(
                conn,
                node_id=self.node_id,
                limit=free,
                queues=self.queues,
                lease_seconds=self.settings.lease_seconds,
                task_types=self.registry.names(),
            )
        finally:
            self._reserved -= free

    async def _claim_batch(self, conn: AsyncConn, free: int) -> int:
        """Claim up to ``free`` tasks on ``conn`` and start them; return how many."""
        claimed = await self._claim(conn, free) or []
        for task in claimed:
            self._start(task)
        if len(claimed) == free:
            self._busy.set()
        else:
            self._busy.clear()
        return len(claimed)

    async def _primary_loop(self) -> None:
        """Claim on a connection that also LISTENs for new tasks.

        Why its own LISTEN: the backend that has just delivered a NOTIFY is
        awake; claiming through that same backend saves waking a second, idle
        one, which on a virtual machine is a good part of the latency between
        an enqueue and the handler's start. After a reconnect it claims at once
        (a notification sent meanwhile was lost, the claim finds the task).
        """
        backoff = Backoff(maximum=RETRY_BACKOFF_MAX)
        while not self._stopping.is_set():
            try:
                async with self.claim_pool.connection() as conn:
                    await conn.execute("LISTEN tickbase_enqueued")
                    try:
                        await self._serve(conn)
                    finally:
                        with contextlib.suppress(psycopg.Error, OSError):
                            await conn.execute("UNLISTEN *")
                backoff.reset()
            except (psycopg.Error, OSError) as exc:
                delay = backoff.next()
                logger.warning("fetch failed (%s); retrying in %.1fs", exc, delay)
                await self.sleep(delay)

    async def _serve(self, conn: AsyncConn) -> None:
        while not self._stopping.is_set():
            free = self._free_slots()
            if free <= 0:
                self._slot_freed.clear()
                await self._slot_freed.wait()
                continue
            claimed = await self._claim_batch(conn, free)
            if claimed < free and time.monotonic() >= self._limited_retry_at:
                claimed += await self._claim_limited(conn, free - claimed)
            if claimed == free:
                continue
            if claimed:
                # Let the handlers just started begin before the idle
                # bookkeeping below: their start is the latency users see.
                await asyncio.sleep(0)
            await self._wait_for_work(conn, await self._idle_timeout(conn))

    async def _claim_limited(self, conn: AsyncConn, free: int) -> int:
        """Claim up to ``free`` tasks under limits (see queue.limits); return how many."""
        claimed = await self._claim(conn, free, limited=True)
        now = time.monotonic()
        if claimed is None:
            self._limited_retry_at = now + self.settings.poll_interval
            return 0
        self._limited_retry_at = now if claimed else now + LIMITED_RETRY_SECONDS
        for task in claimed:
            self._limited.add(task.id)
            self._start(task)
        return len(claimed)

    async def _wait_for_work(self, conn: AsyncConn, timeout: float) -> None:
        """Until a NOTIFY names one of our queues, a limited slot frees, the
        timeout passes, or stop()."""
        self._limited_wake.clear()
        notified = asyncio.ensure_future(self._notified(conn, timeout))
        stopping = asyncio.ensure_future(self._stopping.wait())
        limited = asyncio.ensure_future(self._limited_wake.wait())
        try:
            await asyncio.wait({notified, stopping, limited}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (notified, stopping, limited):
                waiter.cancel()
            await asyncio.gather(notified, stopping, limited, return_exceptions=True)
        if not notified.cancelled() and notified.exception() is not None:
            raise notified.exception()  # type: ignore[misc]

    async def _notified(self, conn: AsyncConn, timeout: float) -> None:
        async for notify in conn.notifies(timeout=timeout):
            if self.queues is None or any(q in self.queues for q in notify.payload.split(",")):
                self._limited_retry_at = 0.0
                return

    async def _helper_loop(self) -> None:
        """A second claimer, busy only while claims come back full: one claim
        is in flight while the other loop's batch starts."""
        backoff = Backoff(maximum=RETRY_BACKOFF_MAX)
        while not self._stopping.is_set():
            if not self._busy.is_set():
                await self._busy.wait()
                continue
            free = self._free_slots()
            if free <= 0:
                self._slot_freed.clear()
                await self._slot_freed.wait()
                continue
            try:
                async with self.claim_pool.connection() as conn:
                    await self._claim_batch(conn, free)
                backoff.reset()
            except (psycopg.Error, OSError) as exc:
                delay = backoff.next()
                logger.warning("fetch failed (%s); retrying in %.1fs", exc, delay)
                await self.sleep(delay)

    async def _idle_timeout(self, conn: AsyncConn) -> float:
        timeout = min(
            self.settings.poll_interval, max(self._limited_retry_at - time.monotonic(), 0.0)
        )
        next_due = await self.queue.next_run_at(conn, self.queues, self.registry.names())
        if next_due is not None:
            until = (next_due - datetime.now(UTC)).total_seconds()
            timeout = min(timeout, max(until, 0.0))
        return timeout

    # ---- running ---------------------------------------------------------------

    def _start(self, task: ClaimedTask) -> None:
        definition = self.registry.get(task.task_type)
        if definition is None:
            self.reporter.unknown_type(task)
            return
        payload = task.payload if isinstance(task.payload, dict) else {"value": task.payload}
        if definition.wants_context:
            payload = {**payload, "context": _context(task)}
        if task.workflow_run_id is not None:
            self.reporter.workflow_runs[task.id] = task.workflow_run_id
        func = definition.func
        if definition.is_async:
            start: Callable[[], Awaitable[Any]] = functools.partial(func, **payload)
        else:
            loop = asyncio.get_running_loop()
            start = functools.partial(
                loop.run_in_executor, self.executor, functools.partial(func, **payload)
            )
        self._track(task, self._execute(task, start))

    def _track(self, task: ClaimedTask, work: Any) -> None:
        # Claimed again while an older attempt runs here: a rescue re-queued it
        # (this node was reaped, or the lease expired). The older run is lost: it
        # stops now, as the next lease renewal (by id) would not tell it apart.
        superseded = self._running.get(task.id)
        if superseded is not None:
            logger.warning("task %d: claimed again, stopping its older run", task.id)
            superseded.stop_reason = "lost"
            superseded.task.cancel()
        running_task = asyncio.ensure_future(work)
        self._running[task.id] = _Running(task, running_task)

    async def _execute(self, task: ClaimedTask, start: Callable[[], Awaitable[Any]]) -> None:
        """Run one attempt to its outcome; ``start`` begins the handler's work."""
        try:
            # asyncio.timeout(None) never expires. A sync handler's thread cannot
            # be interrupted: on timeout the task is failed and the thread's
            # eventual result is discarded.
            async with asyncio.timeout(task.timeout):
                value = await start()
        except asyncio.CancelledError:
            self._report_stopped(task)
        except TimeoutError as exc:
            self.reporter.timed_out(task, exc)
        except Exception as exc:
            self.reporter.raised(task, exc)
        else:
            self.reporter.returned(task, value)
        finally:
            self._release(task)

    def _release(self, task: ClaimedTask) -> None:
        if self._own(task):  # not a superseded attempt's: that entry is gone
            del self._running[task.id]
        self._slot_freed.set()

    def _own(self, task: ClaimedTask) -> bool:
        entry = self._running.get(task.id)
        return entry is not None and entry.claimed.attempt == task.attempt

    # ---- reporting -------------------------------------------------------------

    def _report_stopped(self, task: ClaimedTask) -> None:
        if not self._own(task):
            return  # superseded: lost, and the id's bookkeeping is the new attempt's
        reason = self._running[task.id].stop_reason
        if reason == "cancel":
            self.reporter.cancelled(task)
        elif reason == "shutdown":
            self.reporter.requeued(task)
        # "lost": another node owns the task now; any report would be refused.
        if reason == "lost":
            self._limited.discard(task.id)

    def _on_reported(self, batch: list[Outcome]) -> None:
        if self._limited and any(outcome.task_id in self._limited for outcome in batch):
            # A limited task's end is committed: its slot (queue, key) is free
            # for the next limited claim, here or on any node.
            self._limited.difference_update(outcome.task_id for outcome in batch)
            self._limited_retry_at = 0.0
            self._limited_wake.set()

    # ---- heartbeat, cancel, rescue ----------------------------------------------

    def _on_cancel(self, payload: str) -> None:
        with contextlib.suppress(ValueError):
            self._stop_task(int(payload), "cancel")

    def _stop_task(self, task_id: int, reason: str) -> None:
        entry = self._running.get(task_id)
        if entry is not None and entry.stop_reason is None:
            entry.stop_reason = reason
            entry.task.cancel()

    async def _heartbeat_loop(self) -> None:
        interval = self.settings.lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            started = time.monotonic()
            try:
                ids = list(self._running)
                # The claim pool, not the shared one that a gateway here can hold for
                # longer than a lease (a crash loses at most one beat's async commit).
                async with self.claim_pool.connection() as conn:
                    lease = self.settings.lease_seconds
                    to_stop = (
                        await self.queue.heartbeat(conn, self.node_id, ids, lease) if ids else []
                    )
                    # The leader rescues and reconciles; without one (no node with
                    # the scheduler role) workers rescue expired leases themselves.
                    rescued = await self.queue.rescue(
                        conn, node_id=self.node_id, unless_leader=True
                    )
                    if rescued:
                        await reconcile(conn)
                for task_id, lost in to_stop:
                    if lost:
                        logger.warning("task %d: lease lost, stopping its handler", task_id)
                    self._stop_task(task_id, "lost" if lost else "cancel")
                if rescued:
                    logger.warning("rescued %d tasks whose lease expired", len(rescued))
            except (psycopg.Error, OSError) as exc:
                logger.warning("heartbeat failed (%s)", exc)
            logger.debug("heartbeat took %.1f ms", (time.monotonic() - started) * 1000)
