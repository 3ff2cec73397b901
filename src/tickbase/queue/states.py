"""The task state machine: the single source of which transition is legal.

::

    pending ──claim──▶ running ──ok──────────────▶ succeeded
       ▲                  │ ├──error, attempts left─▶ retrying ──due, claim──▶ running
       │                  │ ├──error, none left────▶ failed
       │                  │ ├──cancel (handler stops)▶ cancelled
       └──shutdown requeue┘ └──lease expired──────▶ retrying | failed | cancelled
    pending | retrying ──cancel──▶ cancelled

Final states (succeeded, failed, cancelled) never change again; retrying a final
task enqueues a new task. Every statement in ``queries.sql`` that changes a
status names the statuses it expects in its WHERE clause; these tables are what
those guards implement, and the tests check the two agree.
"""

from __future__ import annotations

from tickbase.types import TaskStatus

TRANSITIONS: dict[TaskStatus, frozenset[TaskStatus]] = {
    TaskStatus.PENDING: frozenset({TaskStatus.RUNNING, TaskStatus.CANCELLED}),
    TaskStatus.RETRYING: frozenset({TaskStatus.RUNNING, TaskStatus.CANCELLED}),
    TaskStatus.RUNNING: frozenset(
        {
            TaskStatus.SUCCEEDED,
            TaskStatus.FAILED,
            TaskStatus.RETRYING,
            TaskStatus.CANCELLED,
            TaskStatus.PENDING,
        }
    ),
    TaskStatus.SUCCEEDED: frozenset(),
    TaskStatus.FAILED: frozenset(),
    TaskStatus.CANCELLED: frozenset(),
}


def can_transition(current: TaskStatus, new: TaskStatus) -> bool:
    """Whether ``current → new`` is a legal transition."""
    return new in TRANSITIONS[current]
