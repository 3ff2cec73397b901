"""The task state machine: the single source of which transition is legal.

::

    pending ──claim──▶ running ──ok──────────────▶ succeeded
       ▲                  │ ├──error or Retry, attempts left─▶ retrying ──due, claim──▶ running
       │                  │ ├──error or Retry, none left────▶ failed
       │                  │ ├──cancel (handler stops), Cancel▶ cancelled
       ├──shutdown requeue┤ └──lease expired / node dead──▶ retrying | failed | cancelled
       └──Snooze (no attempt used)┘
    pending | retrying ──cancel──▶ cancelled

How each outcome a worker reports becomes a status is ``tickbase.outcome_status``
(migration 0013), held to ``OutcomeKind`` by a test.

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
