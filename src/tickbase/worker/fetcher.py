"""The worker's fetch side: claiming tasks into free slots, waiting for work.

The *primary fetch loop* claims on a connection that also LISTENs for
``tickbase_enqueued``; the *helper fetch loop* claims too while claims come
back full. Each claims at most half the slots (FETCHERS) and hands what it
claimed to :class:`~tickbase.worker.execution.Execution`. When the plain claim
leaves slots free, the limited claim (``tickbase.queue.limits``) is tried, at
once or every LIMITED_RETRY_SECONDS (see :mod:`tickbase.worker.worker`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import psycopg

from tickbase.service import Backoff

if TYPE_CHECKING:
    from tickbase.db.pool import AsyncConn
    from tickbase.queue.models import ClaimedTask, Outcome
    from tickbase.worker.worker import Worker

logger = logging.getLogger("tickbase.worker")

FETCHERS = 2
# Seconds between limited claims while every due limited task is held back
# (a rate window to slide, a key or a queue slot to free on another node).
LIMITED_RETRY_SECONDS = 0.25


class Fetcher:
    """Claims tasks of ``worker.queues`` (all when ``None``) for
    ``worker.execution`` until the worker is stopping."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self._reserved = 0  # slots promised to claims in flight
        # When to try the limited claim again (monotonic): at once after new
        # tasks or a finished limited task, a moment later while every due
        # limited task is held back by its limits, at the poll otherwise.
        self._limited_retry_at = 0.0
        self._limited_wake = asyncio.Event()
        self._busy = asyncio.Event()

    async def run(self) -> None:
        """Both fetch loops, until the service is stopping."""
        # Two fetch loops (FETCHERS), each claiming up to half the slots: one
        # claim is in flight while the other loop's batch runs, so the
        # database and the handlers work at the same time.
        await asyncio.gather(self._primary_loop(), self._helper_loop())

    def wake(self) -> None:
        """Wake the fetch loops wherever they wait (so they see a stop)."""
        self.worker.execution.slot_freed.set()
        self._busy.set()

    def on_reported(self, batch: list[Outcome]) -> None:
        """A batch of outcomes is committed: retry the limited claim at once
        when it frees a limited task's slot."""
        if self.worker.execution.limited_ended(batch):
            # A limited task's end is committed: its slot (queue, key) is free
            # for the next limited claim, here or on any node.
            self._limited_retry_at = 0.0
            self._limited_wake.set()

    # ---- claiming --------------------------------------------------------------

    def _free_slots(self) -> int:
        return min(
            self.worker.concurrency - self.worker.execution.count() - self._reserved,
            -(-self.worker.concurrency // FETCHERS),
        )

    async def _wait_slot(self) -> None:
        slot_freed = self.worker.execution.slot_freed
        slot_freed.clear()
        await slot_freed.wait()

    async def _claim(
        self, conn: AsyncConn, free: int, *, limited: bool = False
    ) -> list[ClaimedTask] | None:
        """One claim statement (plain or limited) with ``free`` slots reserved meanwhile."""
        self._reserved += free
        try:
            claim = self.worker.queue.claim_limited if limited else self.worker.queue.claim
            return await claim(
                conn,
                node_id=self.worker.node_id,
                limit=free,
                queues=self.worker.queues,
                lease_seconds=self.worker.settings.lease_seconds,
                task_types=self.worker.registry.names(),
            )
        finally:
            self._reserved -= free

    async def _claim_batch(self, conn: AsyncConn, free: int) -> int:
        """Claim up to ``free`` tasks on ``conn`` and start them; return how many."""
        claimed = await self._claim(conn, free) or []
        for task in claimed:
            self.worker.execution.start(task)
        if len(claimed) == free:
            self._busy.set()
        else:
            self._busy.clear()
        return len(claimed)

    async def _claim_limited(self, conn: AsyncConn, free: int) -> int:
        """Claim up to ``free`` tasks under limits (see queue.limits); return how many."""
        claimed = await self._claim(conn, free, limited=True)
        now = time.monotonic()
        if claimed is None:
            self._limited_retry_at = now + self.worker.settings.poll_interval
            return 0
        self._limited_retry_at = now if claimed else now + LIMITED_RETRY_SECONDS
        for task in claimed:
            self.worker.execution.start(task, limited=True)
        return len(claimed)

    # ---- the loops -------------------------------------------------------------

    async def _primary_loop(self) -> None:
        """Claim on a connection that also LISTENs for new tasks.

        Why its own LISTEN: the backend that has just delivered a NOTIFY is
        awake; claiming through that same backend saves waking a second, idle
        one, which on a virtual machine is a good part of the latency between
        an enqueue and the handler's start. After a reconnect it claims at once
        (a notification sent meanwhile was lost, the claim finds the task).
        """
        backoff = Backoff()
        while not self.worker.stopping:
            try:
                async with self.worker.claim_pool.connection() as conn:
                    await conn.execute("LISTEN tickbase_enqueued")
                    try:
                        await self._serve(conn)
                    finally:
                        with contextlib.suppress(psycopg.Error, OSError):
                            await conn.execute("UNLISTEN *")
                backoff.reset()
            except (psycopg.Error, OSError) as exc:
                await self._retry_later(backoff, exc)

    async def _serve(self, conn: AsyncConn) -> None:
        while not self.worker.stopping:
            free = self._free_slots()
            if free <= 0:
                await self._wait_slot()
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

    async def _helper_loop(self) -> None:
        """A second claimer, busy only while claims come back full: one claim
        is in flight while the other loop's batch starts."""
        backoff = Backoff()
        while not self.worker.stopping:
            if not self._busy.is_set():
                await self._busy.wait()
                continue
            free = self._free_slots()
            if free <= 0:
                await self._wait_slot()
                continue
            try:
                async with self.worker.claim_pool.connection() as conn:
                    await self._claim_batch(conn, free)
                backoff.reset()
            except (psycopg.Error, OSError) as exc:
                await self._retry_later(backoff, exc)

    async def _retry_later(self, backoff: Backoff, exc: Exception) -> None:
        delay = backoff.next()
        logger.warning("fetch failed (%s); retrying in %.1fs", exc, delay)
        await self.worker.sleep(delay)

    # ---- waiting for work ------------------------------------------------------

    async def _wait_for_work(self, conn: AsyncConn, timeout: float) -> None:
        """Until a NOTIFY names one of our queues, a limited slot frees, the
        timeout passes, or stop()."""
        self._limited_wake.clear()
        notified = asyncio.ensure_future(self._notified(conn, timeout))
        stopping = asyncio.ensure_future(self.worker.wait_stopping())
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
        queues = self.worker.queues
        async for notify in conn.notifies(timeout=timeout):
            if queues is None or any(q in queues for q in notify.payload.split(",")):
                self._limited_retry_at = 0.0
                return

    async def _idle_timeout(self, conn: AsyncConn) -> float:
        timeout = min(
            self.worker.settings.poll_interval, max(self._limited_retry_at - time.monotonic(), 0.0)
        )
        worker = self.worker
        next_due = await worker.queue.next_run_at(conn, worker.queues, worker.registry.names())
        if next_due is not None:
            until = (next_due - datetime.now(UTC)).total_seconds()
            timeout = min(timeout, max(until, 0.0))
        return timeout
