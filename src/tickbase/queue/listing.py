"""Tasks by filter: listings, and bulk cancel/retry with a dry run and an audit row.

Overview
    :func:`match_ids` is the one place a :class:`~tickbase.queue.filters.TaskFilter`
    becomes rows (``listing.sql``'s ``task_match_ids``): the dashboard's task
    list, ``GET /api/v1/tasks`` and a bulk action
    (:meth:`~tickbase.queue.repository.TaskQueue.bulk_action`) all select
    through it.

Bulk actions
    A bulk action is asked twice. The dry run (``dry_run=True``) counts the matching tasks, at most :data:`BULK_MAX`, and
    answers the newest matching id; the run passes that id back as
    ``up_to_id`` and acts on exactly the tasks the dry run counted that still
    match (tasks created since are left alone; a task that ended meanwhile is
    counted in ``matched`` but not in ``changed``). The run writes its audit
    row (who, what filter, how many) in the transaction that acts, so there
    is no action without its row and no row without its action.

Failure cases
    More than :data:`BULK_MAX` matching tasks is refused (narrow the filter);
    so is a run without the dry run's ``up_to_id``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import psycopg
from psycopg.rows import dict_row

from tickbase.db.pool import AsyncConn
from tickbase.db.sqlfile import load_queries
from tickbase.errors import InvalidTask
from tickbase.queue.filters import TaskFilter
from tickbase.queue.models import Task

L = load_queries("tickbase.queue", "listing.sql")

BULK_MAX = 100_000
LISTING_TIMEOUT_MS = 3000
"""How long one page of a listing may search (a rare match walks far back)."""
BulkKind = Literal["cancel", "retry"]


@dataclass(frozen=True, slots=True)
class BulkResult:
    """What a bulk action matched and did (``changed`` is 0 for a dry run)."""

    action: str
    dry_run: bool
    matched: int
    changed: int
    up_to_id: int | None
    audit_id: int | None = None
    at: datetime | None = None


@dataclass(frozen=True, slots=True)
class BulkRecord:
    """A row of ``tickbase.task_bulk_actions``."""

    id: int
    at: datetime
    actor_token_id: int | None
    actor: str
    action: str
    filter: dict[str, Any]
    up_to_id: int
    matched: int
    changed: int


async def match_ids(
    conn: AsyncConn,
    task_filter: TaskFilter,
    *,
    before_id: int | None = None,
    up_to_id: int | None = None,
    limit: int,
) -> list[int]:
    """Ids of matching tasks, newest first."""
    params = {
        **task_filter.params(),
        "before_id": before_id,
        "up_to_id": up_to_id,
        "limit": limit,
    }
    cursor = await conn.execute(L["task_match_ids"], params)
    return [int(row[0]) for row in await cursor.fetchall()]


async def list_tasks(
    conn: AsyncConn, task_filter: TaskFilter, *, before_id: int | None, limit: int
) -> list[Task]:
    """A page of matching tasks, newest first.

    A filter that few tasks match walks far back through the table; the walk
    is cut at :data:`LISTING_TIMEOUT_MS` and refused with ``InvalidTask``
    (narrow it by time or status) rather than holding a connection for the
    length of a table scan."""
    try:
        async with conn.transaction():
            await conn.execute(L["listing_timeout"], {"ms": str(LISTING_TIMEOUT_MS)})
            ids = await match_ids(conn, task_filter, before_id=before_id, limit=limit)
    except psycopg.errors.QueryCanceled:
        raise InvalidTask(
            "filter",
            task_filter.to_dict(),
            f"took over {LISTING_TIMEOUT_MS / 1000:g} s to find a page: add a creation time "
            "range, a status or a type",
        ) from None
    if not ids:
        return []
    cursor = conn.cursor(row_factory=dict_row)
    await cursor.execute(L["task_get_many"], {"ids": ids})
    return [Task.from_row(row) for row in await cursor.fetchall()]


async def record_bulk_action(
    conn: AsyncConn,
    task_filter: TaskFilter,
    action: BulkKind,
    *,
    up_to_id: int,
    matched: int,
    changed: int,
    actor: str,
    actor_token_id: int | None,
) -> tuple[int, datetime]:
    """Write a bulk action's audit row (in the caller's transaction): its id and time."""
    cursor = await conn.execute(
        L["bulk_action_record"],
        {
            "actor_token_id": actor_token_id,
            "actor": actor,
            "action": action,
            "filter": json.dumps(task_filter.to_dict()),
            "up_to_id": up_to_id,
            "matched": matched,
            "changed": changed,
        },
    )
    row = await cursor.fetchone()
    assert row is not None
    return int(row[0]), row[1]


async def bulk_actions(
    conn: AsyncConn, *, before_id: int | None = None, limit: int = 50
) -> list[BulkRecord]:
    """The audit rows, newest first."""
    cursor = await conn.execute(L["bulk_actions_list"], {"before_id": before_id, "limit": limit})
    return [BulkRecord(*row) for row in await cursor.fetchall()]


__all__ = [
    "BULK_MAX",
    "BulkRecord",
    "BulkResult",
    "bulk_actions",
    "list_tasks",
    "match_ids",
    "record_bulk_action",
]
