"""The JSON shapes of task filters and bulk actions (camelCase outside).

A filter is what the dashboard's task list puts in its URL and what a bulk
action acts on: the same fields in both, read into one
:class:`~tickbase.queue.filters.TaskFilter`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from tickbase.errors import InvalidTask
from tickbase.gateway.schemas import CamelModel, InModel
from tickbase.queue.filters import MAX_CONDITIONS, TaskFilter

CONDITION_MAX_CHARS = 500


class TaskFilterIn(InModel):
    """Which tasks: every field optional, all combined (AND)."""

    status: str | None = Field(default=None, pattern=r"^[a-z]{1,20}$")
    queue: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    task_type: str | None = Field(default=None, min_length=1, max_length=200)
    node_id: str | None = Field(default=None, min_length=1, max_length=200)
    created_after: datetime | None = None
    created_before: datetime | None = None
    where: list[str] = Field(
        default_factory=list,
        max_length=MAX_CONDITIONS,
        description="JSON conditions: payload.<path> = <value> or result.<path> = <value>",
    )

    def to_filter(self) -> TaskFilter:
        """The queue's filter (refusing bad conditions with ``InvalidTask``)."""
        for text in self.where:
            if len(text) > CONDITION_MAX_CHARS:
                raise InvalidTask("where", text[:40] + "...", f"over {CONDITION_MAX_CHARS} chars")
        return TaskFilter.parse(
            where=self.where,
            status=self.status,
            queue=self.queue,
            task_type=self.task_type,
            node_id=self.node_id,
            created_after=self.created_after,
            created_before=self.created_before,
        )


class TaskBulkIn(InModel):
    """Cancel or retry every task matching ``filter``: first ``dryRun`` (the
    default) to learn the count and ``upToId``, then the run with that ``upToId``."""

    action: Literal["cancel", "retry"]
    filter: TaskFilterIn = Field(default_factory=TaskFilterIn)
    dry_run: bool = True
    up_to_id: int | None = Field(default=None, ge=0, le=2**63 - 1)


class TaskBulkOut(CamelModel):
    """What a bulk action matched and changed (``auditId``: its audit row; null for a dry run)."""

    action: str
    dry_run: bool
    matched: int
    changed: int
    up_to_id: int | None = None
    audit_id: int | None = None
    at: datetime | None = None


class TaskBulkRecordOut(CamelModel):
    """An audit row: who cancelled or retried what, when."""

    id: int
    at: datetime
    actor_token_id: int | None = None
    actor: str
    action: str
    filter: dict[str, object]
    up_to_id: int
    matched: int
    changed: int


class TaskBulkRecordPage(CamelModel):
    items: list[TaskBulkRecordOut]
    next_cursor: str | None = None
