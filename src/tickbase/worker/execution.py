"""The worker's running side: handlers started, tracked, stopped and drained.

Each claimed task's handler runs in its own asyncio Task (a sync handler in the
thread pool) under the task's timeout; its end goes to the
:class:`~tickbase.worker.reporter.Reporter`. A running task stops early when
its cancel is requested (``tickbase_cancel``, or the heartbeat's answer), when
its lease is lost (the heartbeat's answer, or this node claimed it again after
a rescue), or at shutdown after the grace period (it is re-queued without
counting the attempt). The *heartbeat loop* renews the leases of running tasks
and, while no leader is alive, rescues tasks whose lease expired.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg

from tickbase.queue.models import ClaimedTask, Outcome
from tickbase.service import current_task_cancelling
from tickbase.worker.context import TaskContext
from tickbase.workflows.engine import reconcile

if TYPE_CHECKING:
    from tickbase.worker.worker import Worker

logger = logging.getLogger("tickbase.worker")


def _context(task: ClaimedTask) -> TaskContext:
    return TaskContext(
        task_id=task.id,
        attempt=task.attempt,
        max_attempts=task.max_attempts,
        workflow_run_id=task.workflow_run_id,
        step=task.step,
        inputs=task.inputs or {},
    )


@dataclass
class _Running:
    claimed: ClaimedTask
    task: asyncio.Task[None]
    stop_reason: str | None = None  # "cancel" | "lost" | "shutdown"


class Execution:
    """Runs the handlers of the tasks ``worker`` claimed and keeps their leases.

    :attr:`slot_freed` is set whenever a handler ends.
    """

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.executor = ThreadPoolExecutor(
            max_workers=worker.concurrency, thread_name_prefix="tickbase"
        )
        self.slot_freed = asyncio.Event()
        self._running: dict[int, _Running] = {}
        self._limited: set[int] = set()  # running tasks claimed under a limit

    def count(self) -> int:
        """Handlers running now."""
        return len(self._running)

    def close(self) -> None:
        """After :meth:`drain`: drop the thread pool (threads still running are abandoned)."""
        self.executor.shutdown(wait=False, cancel_futures=True)

    # ---- starting --------------------------------------------------------------

    def start(self, task: ClaimedTask, *, limited: bool = False) -> None:
        """Start ``task``'s handler (``limited``: claimed under a limit, see
        :meth:`limited_ended`)."""
        if limited:
            self._limited.add(task.id)
        definition = self.worker.registry.get(task.task_type)
        if definition is None:
            self.worker.reporter.unknown_type(task)
            return
        payload = task.payload if isinstance(task.payload, dict) else {"value": task.payload}
        if definition.wants_context:
            payload = {**payload, "context": _context(task)}
        if task.workflow_run_id is not None:
            self.worker.reporter.workflow_runs[task.id] = task.workflow_run_id
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
            self.worker.reporter.timed_out(task, exc)
        except Exception as exc:
            self.worker.reporter.raised(task, exc)
        else:
            self.worker.reporter.returned(task, value)
        finally:
            self._release(task)

    def _release(self, task: ClaimedTask) -> None:
        if self._own(task):  # not a superseded attempt's: that entry is gone
            del self._running[task.id]
        self.slot_freed.set()

    def _own(self, task: ClaimedTask) -> bool:
        entry = self._running.get(task.id)
        return entry is not None and entry.claimed.attempt == task.attempt

    def limited_ended(self, batch: list[Outcome]) -> bool:
        """Whether ``batch`` (just committed) ends tasks claimed under a limit:
        their slots (queue, key) are free for the next limited claim."""
        if self._limited and any(outcome.task_id in self._limited for outcome in batch):
            self._limited.difference_update(outcome.task_id for outcome in batch)
            return True
        return False

    # ---- stopping --------------------------------------------------------------

    def _report_stopped(self, task: ClaimedTask) -> None:
        if not self._own(task):
            return  # superseded: lost, and the id's bookkeeping is the new attempt's
        reason = self._running[task.id].stop_reason
        if reason == "cancel":
            self.worker.reporter.cancelled(task)
        elif reason == "shutdown":
            self.worker.reporter.requeued(task)
        # "lost": another node owns the task now; any report would be refused.
        if reason == "lost":
            self._limited.discard(task.id)

    def on_cancel(self, payload: str) -> None:
        """A ``tickbase_cancel`` notification: stop that task if it runs here."""
        with contextlib.suppress(ValueError):
            self._stop_task(int(payload), "cancel")

    def _stop_task(self, task_id: int, reason: str) -> None:
        entry = self._running.get(task_id)
        if entry is not None and entry.stop_reason is None:
            entry.stop_reason = reason
            entry.task.cancel()

    async def drain(self) -> None:
        """At shutdown: let running handlers finish within the grace period,
        then cancel the rest (they are re-queued)."""
        if not self._running:
            return
        logger.info(
            "stopping: waiting up to %.1fs for %d running tasks",
            self.worker.settings.shutdown_grace,
            len(self._running),
        )
        waiting = [entry.task for entry in self._running.values()]
        _, still_running = await asyncio.wait(waiting, timeout=self.worker.settings.shutdown_grace)
        if still_running:
            logger.warning(
                "re-queueing %d tasks still running after the grace period", len(still_running)
            )
            for entry in list(self._running.values()):
                entry.stop_reason = entry.stop_reason or "shutdown"
                entry.task.cancel()
            await asyncio.wait(still_running)

    # ---- heartbeat, rescue -----------------------------------------------------

    async def heartbeat_loop(self) -> None:
        """Forever (until cancelled): renew the leases of running tasks, stop
        those cancelled or lost, rescue expired leases while no leader is alive."""
        interval = self.worker.settings.lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            started = time.monotonic()
            try:
                ids = list(self._running)
                # The claim pool, not the shared one that a gateway here can hold for
                # longer than a lease (a crash loses at most one beat's async commit).
                async with self.worker.claim_pool.connection() as conn:
                    lease = self.worker.settings.lease_seconds
                    to_stop = (
                        await self.worker.queue.heartbeat(conn, self.worker.node_id, ids, lease)
                        if ids
                        else []
                    )
                    # The leader rescues and reconciles; without one (no node with
                    # the scheduler role) workers rescue expired leases themselves.
                    rescued = await self.worker.queue.rescue(
                        conn, node_id=self.worker.node_id, unless_leader=True
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
            if current_task_cancelling():
                # The stop arrived while the pool handed this beat a connection
                # and the pool lost it (psycopg_pool 3.3, psycopg#1345): stop now.
                raise asyncio.CancelledError
