"""What a handler may know about its own execution."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class TaskContext:
    """Passed to a handler that declares a ``context`` parameter.

    Example::

        @app.task
        async def total(context: TaskContext) -> float:
            return sum(context.inputs.values())   # results of the steps it ran after
    """

    task_id: int
    attempt: int
    max_attempts: int
    workflow_run_id: int | None = None
    step: str | None = None
    inputs: dict[str, Any] = field(default_factory=dict)
    """Results of the workflow steps this step depends on, by step name."""
