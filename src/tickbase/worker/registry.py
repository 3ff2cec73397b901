"""Task definitions: which function handles which task type, with what defaults."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from psycopg_pool import AsyncConnectionPool

from tickbase.cluster.nodes import known_task_types
from tickbase.db.pool import AsyncConn
from tickbase.errors import ConfigurationError, UnknownTaskType
from tickbase.queue.limits import RateLimit, TaskLimits
from tickbase.queue.models import DEFAULT_QUEUE, QUEUE_NAME, TASK_OPTIONS, TaskOptions


@dataclass(frozen=True)
class TaskDefinition:
    """A registered handler and the defaults its tasks are enqueued with."""

    name: str
    func: Callable[..., Any]
    queue: str = DEFAULT_QUEUE
    priority: int = 0
    retries: int = 0
    retry_delay: float = 1.0
    timeout: float | None = None
    rate_limit: str | None = None
    concurrency_key: str | None = None
    concurrency_limit: int = 1
    limits: TaskLimits = field(init=False)
    is_async: bool = field(init=False)
    parameters: frozenset[str] = field(init=False)
    accepts_any: bool = field(init=False)
    wants_context: bool = field(init=False)

    def __post_init__(self) -> None:
        if not QUEUE_NAME.match(self.queue):
            raise ConfigurationError(f"task {self.name!r}: invalid queue name {self.queue!r}")
        if not isinstance(self.retries, int) or self.retries < 0:
            raise ConfigurationError(
                f"task {self.name!r}: retries must be >= 0, got {self.retries!r}"
            )
        if self.timeout is not None and self.timeout <= 0:
            raise ConfigurationError(
                f"task {self.name!r}: timeout must be > 0, got {self.timeout!r}"
            )
        try:
            rate = RateLimit.parse(self.rate_limit) if self.rate_limit is not None else None
        except ConfigurationError as exc:
            raise ConfigurationError(f"task {self.name!r}: {exc}") from None
        limits = TaskLimits(self.name, rate, self.concurrency_key, self.concurrency_limit)
        object.__setattr__(self, "limits", limits)
        signature = inspect.signature(self.func)
        object.__setattr__(self, "is_async", inspect.iscoroutinefunction(self.func))
        object.__setattr__(self, "parameters", frozenset(signature.parameters))
        object.__setattr__(self, "wants_context", "context" in signature.parameters)
        object.__setattr__(
            self,
            "accepts_any",
            any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values()),
        )

    @property
    def max_attempts(self) -> int:
        return self.retries + 1

    @property
    def options(self) -> TaskOptions:
        """What its tasks are enqueued with unless the caller says otherwise."""
        # Each task option is an attribute of the same name here (max_attempts
        # a property over retries), so the list of them stays in TaskOptions.
        return TaskOptions(**{name: getattr(self, name) for name in TASK_OPTIONS})

    def enqueue_defaults(self) -> dict[str, Any]:
        """:attr:`options` by name (what a node publishes, a workflow step stores)."""
        return self.options.as_dict()


class Registry:
    """Task type → definition. Every registry knows the built-in tasks."""

    def __init__(self) -> None:
        self._definitions: dict[str, TaskDefinition] = {}

    def add(self, definition: TaskDefinition) -> None:
        existing = self._definitions.get(definition.name)
        if existing is not None and existing.func is not definition.func:
            raise ConfigurationError(
                f"task type {definition.name!r} is already registered to "
                f"{existing.func.__module__}.{existing.func.__qualname__}"
            )
        self._definitions[definition.name] = definition

    def get(self, task_type: str) -> TaskDefinition | None:
        return self._definitions.get(task_type)

    def require(self, task_type: str) -> TaskDefinition:
        definition = self._definitions.get(task_type)
        if definition is None:
            raise UnknownTaskType(task_type, self._definitions)
        return definition

    def task_options(self, task_type: str) -> dict[str, Any]:
        """The enqueue defaults of a registered task type (empty when unknown)."""
        definition = self._definitions.get(task_type)
        return {} if definition is None else definition.enqueue_defaults()

    def names(self) -> list[str]:
        return sorted(self._definitions)

    def published(self) -> dict[str, dict[str, Any]]:
        """Every type with the enqueue defaults its handler declares (what a node publishes)."""
        return {name: d.enqueue_defaults() for name, d in sorted(self._definitions.items())}

    async def defaults_for(
        self, task_type: str, pool: AsyncConnectionPool[AsyncConn]
    ) -> dict[str, Any]:
        """The enqueue defaults of ``task_type`` for a producer (the gateway, the CLI).

        From this registry, else as a live node publishes them (its worker may
        run types this process never imported), else a stored schedule's queue.
        Any other type is refused with "did you mean": most likely a typo.
        """
        definition = self.get(task_type)
        if definition is not None:
            return definition.enqueue_defaults()
        async with pool.connection() as conn:
            known = await known_task_types(conn)
        if task_type not in known:
            raise UnknownTaskType(
                task_type,
                [*self.names(), *known],
                reason="no live worker handles it and no schedule fires it",
            )
        return known[task_type]

    def limits(self) -> list[TaskLimits]:
        """The limits of every task type defined here that has any."""
        return [d.limits for d in self._definitions.values() if d.limits.limited]

    def __contains__(self, task_type: object) -> bool:
        return task_type in self._definitions
