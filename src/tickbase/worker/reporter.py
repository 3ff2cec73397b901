"""The worker's reporting: outcomes buffered in memory, written in batches.

Whenever the buffer is not empty the loop writes all of it with one statement;
while one write is in flight the next batch accumulates (group commit, no
timer). The end of a workflow step and the steps it unblocks commit in one
transaction. A lost connection keeps the outcomes buffered and retries with
backoff; at shutdown it gives up after the grace period (the leases of those
tasks expire and they run again elsewhere).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson
import psycopg

from tickbase.errors import InvalidTask
from tickbase.queue.models import ClaimedTask, Outcome, OutcomeKind
from tickbase.queue.repository import TaskQueue
from tickbase.service import Backoff
from tickbase.worker.control import Cancel, Retry, Snooze, TaskControl
from tickbase.worker.runner import encode_error, encode_error_message, encode_result
from tickbase.workflows.engine import advance

if TYPE_CHECKING:
    from psycopg_pool import AsyncConnectionPool

    from tickbase.db.pool import AsyncConn
    from tickbase.settings import Settings

logger = logging.getLogger("tickbase.worker")


class Reporter:
    """Turns the ends of executions into :class:`Outcome` values and writes them.

    ``on_committed`` is called with each batch once it is stored.
    """

    def __init__(
        self,
        pool: AsyncConnectionPool[AsyncConn],
        node_id: str,
        settings: Settings,
        on_committed: Callable[[list[Outcome]], None],
    ) -> None:
        self.pool = pool
        self.queue = TaskQueue(pool)
        self.node_id = node_id
        self.settings = settings
        self.on_committed = on_committed
        self.processed = 0
        self.workflow_runs: dict[int, int] = {}  # running step task -> its workflow run
        self._outcomes: list[Outcome] = []
        self._ready = asyncio.Event()
        self._closed = asyncio.Event()

    # ---- what ended how --------------------------------------------------------

    def report(self, outcome: Outcome) -> None:
        """Buffer one outcome for the next write."""
        self._outcomes.append(outcome)
        self.processed += 1
        self._ready.set()

    def returned(self, task: ClaimedTask, value: Any) -> None:
        """The handler returned ``value`` (a :class:`TaskControl` is its decision)."""
        if isinstance(value, TaskControl):
            self.decided(task, value)
            return
        try:
            result = encode_result(value, self.settings.result_max_bytes)
        except InvalidTask as exc:
            self.raised(task, exc)
            return
        self.report(Outcome(task.id, task.attempt, OutcomeKind.SUCCEEDED, result))

    def raised(self, task: ClaimedTask, exc: BaseException) -> None:
        """The handler raised ``exc`` (a :class:`TaskControl` is its decision)."""
        if isinstance(exc, TaskControl):
            self.decided(task, exc)
            return
        self.report(Outcome(task.id, task.attempt, OutcomeKind.FAILED, error=encode_error(exc)))

    def timed_out(self, task: ClaimedTask, exc: BaseException) -> None:
        message = f"task exceeded its timeout of {task.timeout:g} s"
        error = encode_error(exc, message=message)
        self.report(Outcome(task.id, task.attempt, OutcomeKind.FAILED, error=error))

    def decided(self, task: ClaimedTask, control: TaskControl) -> None:
        """The handler asked for a retry, a snooze or its cancellation."""
        detail = orjson.dumps(control.detail()).decode()
        if isinstance(control, Snooze):
            kind, delay = OutcomeKind.SNOOZED, control.seconds
        elif isinstance(control, Retry):
            kind, delay = OutcomeKind.RETRY, control.delay
        elif isinstance(control, Cancel):
            kind, delay = OutcomeKind.CANCELLED, None
        else:  # a TaskControl of the user's own: not a decision we know
            self.raised(task, TypeError(f"unknown task control {type(control).__name__}"))
            return
        self.report(Outcome(task.id, task.attempt, kind, error=detail, delay=delay))

    def unknown_type(self, task: ClaimedTask) -> None:
        message = f"no handler registered for task type {task.task_type}"
        error = encode_error_message("UnknownTaskType", message)
        self.report(Outcome(task.id, task.attempt, OutcomeKind.FAILED_FINAL, error=error))

    def cancelled(self, task: ClaimedTask) -> None:
        error = encode_error_message("Cancelled", "cancelled while running")
        self.report(Outcome(task.id, task.attempt, OutcomeKind.CANCELLED, error=error))

    def requeued(self, task: ClaimedTask) -> None:
        self.report(Outcome(task.id, task.attempt, OutcomeKind.REQUEUED))

    # ---- writing ---------------------------------------------------------------

    def close(self) -> None:
        """No more outcomes will come: :meth:`run` returns once the buffer is written."""
        self._closed.set()
        self._ready.set()

    async def run(self) -> None:
        """Write outcomes until :meth:`close`, and what is left after it."""
        backoff = Backoff()
        failing_since: float | None = None
        while True:
            if not self._outcomes:
                if self._closed.is_set():
                    return
                self._ready.clear()
                await self._ready.wait()
                continue
            batch, self._outcomes = self._outcomes, []
            runs = {self.workflow_runs[o.task_id] for o in batch if o.task_id in self.workflow_runs}
            try:
                async with self.pool.connection() as conn:
                    if runs:
                        await self._finish_and_advance(conn, batch, runs)
                    else:
                        await self.queue.finish_many(conn, self.node_id, batch)
                for outcome in batch:
                    self.workflow_runs.pop(outcome.task_id, None)
                self.on_committed(batch)
                backoff.reset()
                failing_since = None
            except (psycopg.Error, OSError) as exc:
                self._outcomes[:0] = batch
                failing_since = failing_since or time.monotonic()
                if self._closed.is_set() and (
                    time.monotonic() - failing_since > self.settings.shutdown_grace
                ):
                    # Give up rather than hang the shutdown: these tasks keep
                    # their leases, which expire, and they run again elsewhere.
                    logger.error(
                        "dropping %d unreported outcomes at shutdown (%s)", len(self._outcomes), exc
                    )
                    return
                logger.warning("report of %d outcomes failed (%s); retrying", len(batch), exc)
                await asyncio.sleep(backoff.next())

    async def _finish_and_advance(
        self, conn: AsyncConn, batch: list[Outcome], runs: set[int]
    ) -> None:
        """A step's end and the steps it unblocks commit together.

        Runs are locked in id order, so two workers never wait on each other's
        runs in a cycle. Should advancing fail for a reason other than the
        database (a bug), the outcomes are still recorded and the housekeeping
        reconcile advances those runs later: a result is never held hostage.
        """
        try:
            async with conn.transaction():
                await self.queue.finish_many(conn, self.node_id, batch)
                for run_id in sorted(runs):
                    await advance(conn, run_id)
        except (psycopg.Error, OSError):
            raise
        except Exception:
            logger.exception(
                "advancing workflow runs %s failed; outcomes recorded alone", sorted(runs)
            )
            await self.queue.finish_many(conn, self.node_id, batch)
