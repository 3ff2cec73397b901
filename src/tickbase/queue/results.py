"""Waiting for a task's result: woken by NOTIFY, with a slow poll behind it.

One :class:`ResultWaiters` per app holds the tasks being awaited; the app's
listener calls :meth:`ResultWaiters.on_task_done` with each
``tickbase_task_done`` payload (comma-separated task ids) and
:meth:`ResultWaiters.wake_all` after a reconnect, when notifications may
have been lost.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from tickbase.db.listener import Listener
from tickbase.errors import ResultTimeout, TaskFailed
from tickbase.queue.repository import TaskQueue
from tickbase.types import TaskStatus


class ResultWaiters:
    """The tasks awaited in this process, each with the events of its waiters."""

    def __init__(self) -> None:
        self._waiters: dict[int, list[asyncio.Event]] = {}

    async def wait(
        self,
        listener: Listener,
        queue: TaskQueue,
        task_id: int,
        timeout: float | None,
        *,
        poll_interval: float,
    ) -> Any:
        """The result of ``task_id`` once it is final.

        Raises :class:`TaskFailed` when the task failed or was cancelled,
        :class:`ResultTimeout` when ``timeout`` seconds pass first.
        """
        # Listen first, then look: a task that ends between the two is seen by
        # the look, one that ends after it wakes the wait.
        await listener.start()
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        woken = asyncio.Event()
        self._waiters.setdefault(task_id, []).append(woken)
        try:
            task = await queue.get(task_id)
            while not task.status.is_final:
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    raise ResultTimeout(task_id, timeout or 0.0, str(task.status))
                wait = poll_interval
                if remaining is not None:
                    wait = min(wait, remaining)
                woken.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await woken.wait()
                task = await queue.get(task_id)
        finally:
            waiters = self._waiters.get(task_id, [])
            with contextlib.suppress(ValueError):
                waiters.remove(woken)
            if not waiters:
                self._waiters.pop(task_id, None)
        if task.status is TaskStatus.SUCCEEDED:
            return task.result
        raise TaskFailed(task_id, str(task.status), task.error)

    def on_task_done(self, payload: str) -> None:
        """Wake the waiters of the task ids in a ``tickbase_task_done`` payload."""
        if not self._waiters:
            return
        for part in payload.split(","):
            with contextlib.suppress(ValueError):
                for woken in self._waiters.get(int(part), ()):
                    woken.set()

    def wake_all(self) -> None:
        """Wake every waiter to look again (notifications may have been lost)."""
        for waiters in self._waiters.values():
            for woken in waiters:
                woken.set()
