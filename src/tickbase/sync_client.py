"""The blocking client (``app.sync``): the async core driven from synchronous code."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from tickbase.queue.models import EnqueueRequest, Task
from tickbase.tasks import TaskHandle

if TYPE_CHECKING:
    from tickbase.app import App

T = TypeVar("T")


class SyncClient:
    """Blocking front end over the async core, for synchronous programs.

    Runs its own event loop in a daemon thread and the app's async code on it,
    so there is one implementation of every operation.

    Example::

        client = app.sync
        handle = client.enqueue(EnqueueRequest("tickbase.echo", {"x": 1}))
        assert client.result(handle.id, timeout=10) == {"x": 1}
    """

    def __init__(self, app: App) -> None:
        from tickbase.app import App  # deferred: the app module imports this one

        self._app = App(settings=app.settings)
        self._app.registry = app.registry
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="tickbase-sync", daemon=True
        )
        self._thread.start()
        self._lock = threading.Lock()

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def _ensure_open(self) -> None:
        with self._lock:
            if self._app._pool is None:
                self._call(self._app.open())

    def enqueue(self, request: EnqueueRequest) -> TaskHandle:
        """Enqueue one request; the handle's async methods belong to the client's loop."""
        self._ensure_open()
        [handle] = self._call(self._app.enqueue_many([request]))
        return handle

    def enqueue_many(self, requests: Sequence[EnqueueRequest]) -> list[TaskHandle]:
        """Enqueue many requests in one statement."""
        self._ensure_open()
        return self._call(self._app.enqueue_many(requests))

    def result(self, task_id: int, timeout: float | None = None) -> Any:
        """Block until the task finishes; see :meth:`TaskHandle.result`."""
        self._ensure_open()
        return self._call(self._app._await_result(task_id, timeout))

    def get(self, task_id: int) -> Task:
        """The task row as it is now."""
        self._ensure_open()
        return self._call(self._app.queue.get(task_id))

    def close(self) -> None:
        """Close connections and stop the loop thread."""
        with contextlib.suppress(RuntimeError):
            self._call(self._app.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self._loop.close()
