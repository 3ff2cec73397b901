"""Shared primitives every block may use; this module imports no block."""

from __future__ import annotations

from enum import StrEnum
from typing import NewType

TaskId = NewType("TaskId", int)
NodeId = NewType("NodeId", str)


class TaskStatus(StrEnum):
    """The status column of ``tickbase.tasks``. See ``queue/states.py`` for the transitions."""

    PENDING = "pending"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset({TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELLED})
