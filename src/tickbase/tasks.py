"""What ``@app.task`` returns (:class:`TaskFunction`) and what enqueuing returns
(:class:`TaskHandle`).

Both are thin: they hold an :class:`~tickbase.app.App` and call it, so that
the app stays the one place that talks to the queue.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

from tickbase.queue.models import ENQUEUE_OPTIONS, EnqueueRequest, Task
from tickbase.types import TaskStatus
from tickbase.worker.registry import TaskDefinition

if TYPE_CHECKING:
    # Only for annotations: the app module imports this one.
    from tickbase.app import App

P = ParamSpec("P")
R = TypeVar("R")


class TaskHandle:
    """A reference to an enqueued task.

    Example::

        handle = await fetch_bars.defer(symbol="ESZ5")
        bars = await handle.result(timeout=10)
    """

    def __init__(self, app: App, task_id: int, *, created: bool = True) -> None:
        self.app = app
        self.id = task_id
        self.created = created
        """False when a dedupe key matched an unfinished task and that task was returned."""

    def __repr__(self) -> str:
        return f"TaskHandle(id={self.id})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TaskHandle) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    async def get(self) -> Task:
        """The task row as it is now."""
        return await self.app.queue.get(self.id)

    async def cancel(self) -> TaskStatus:
        """Cancel the task (see :meth:`TaskQueue.cancel`)."""
        return await self.app.queue.cancel(self.id)

    async def result(self, timeout: float | None = None) -> Any:
        """Wait for the task to finish and return its result.

        Woken by NOTIFY when the task ends (no polling while the listener is
        up; a slow poll covers a lost notification). Raises :class:`TaskFailed`
        when the task failed or was cancelled, :class:`ResultTimeout` when
        ``timeout`` seconds pass first.
        """
        return await self.app._await_result(self.id, timeout)


class TaskFunction(Generic[P, R]):
    """A function registered as a task type; call it directly or ``defer`` it.

    Example::

        @app.task(queue="marketdata", retries=3, timeout=30)
        async def collect(symbol: str) -> dict: ...

        handle = await collect.defer(symbol="BTCUSDT")
    """

    def __init__(self, app: App, definition: TaskDefinition) -> None:
        self.app = app
        self.definition = definition
        functools.update_wrapper(self, definition.func)

    @property
    def name(self) -> str:
        return self.definition.name

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        result: R = self.definition.func(*args, **kwargs)
        return result

    def request(self, kwargs: Mapping[str, Any]) -> EnqueueRequest:
        """The enqueue request for these kwargs.

        Keys that the handler does not accept and that name an enqueue option
        (``queue``, ``priority``, ``delay``, ``run_at``, ``dedupe_key``,
        ``request_id``, ``concurrency_key``, ``max_attempts``, ``retry_delay``,
        ``timeout``) set that option; every other key is payload.
        """
        definition = self.definition
        options: dict[str, Any] = definition.options.as_dict()
        payload: dict[str, Any] = {}
        for key, value in kwargs.items():
            if key in ENQUEUE_OPTIONS and key not in definition.parameters:
                options[key] = value
            else:
                payload[key] = value
        return EnqueueRequest(definition.name, payload, **options)

    async def defer(self, **kwargs: Any) -> TaskHandle:
        """Enqueue one task with ``kwargs`` as payload; return its handle."""
        [handle] = await self.app.enqueue_many([self.request(kwargs)])
        return handle

    async def defer_many(self, kwargs_list: Iterable[Mapping[str, Any]]) -> list[TaskHandle]:
        """Enqueue many tasks in one statement; return their handles in order."""
        return await self.app.enqueue_many([self.request(kwargs) for kwargs in kwargs_list])

    def defer_sync(self, **kwargs: Any) -> TaskHandle:
        """``defer`` for synchronous code (no running event loop needed)."""
        return self.app.sync.enqueue(self.request(kwargs))


def default_task_name(function: Callable[..., Any]) -> str:
    """``module.qualname`` of a handler, with a script's own name for ``__main__``.

    A task defined in ``script.py`` is named ``script.f`` whether the script
    runs as ``python script.py`` (a producer) or is imported by
    ``--app script:app`` (a worker): otherwise the two would never agree.
    """
    module = function.__module__
    if module == "__main__":
        main = sys.modules.get("__main__")
        spec = getattr(main, "__spec__", None)
        path = getattr(main, "__file__", None)
        if spec is not None and spec.name:
            module = spec.name.removesuffix(".__main__")
        elif path:
            module = Path(path).stem
    return f"{module}.{function.__qualname__}"
