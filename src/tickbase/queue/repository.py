"""Typed async functions over the queue's named statements.

Rows become models here and nowhere else; psycopg errors become domain errors
here and nowhere else. Hot-path statements (claim, finish) are sent prepared.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from tickbase.db.errors import domain_error, domain_errors
from tickbase.db.pool import AsyncConn
from tickbase.db.sqlfile import load_queries
from tickbase.errors import InvalidTask, InvalidTransition, TaskNotFound
from tickbase.queue import listing
from tickbase.queue.filters import TaskFilter
from tickbase.queue.limits import LIMITS_LOCK_KEY
from tickbase.queue.models import (
    DEFAULT_QUEUE,
    ClaimedTask,
    EnqueueRequest,
    LinkedTask,
    Outcome,
    Task,
    TaskEvent,
)
from tickbase.types import TaskStatus

Q = load_queries("tickbase.queue")


class TaskQueue:
    """The queue's operations over a connection pool.

    Example::

        queue = TaskQueue(pool)
        [(task_id, created)] = await queue.enqueue_many([EnqueueRequest("tickbase.noop")])
    """

    def __init__(self, pool: AsyncConnectionPool[AsyncConn]) -> None:
        self.pool = pool

    async def enqueue_many(
        self, requests: Sequence[EnqueueRequest], conn: AsyncConn | None = None
    ) -> list[tuple[int, bool]]:
        """Insert every request in one statement; return ``(id, created)`` per request.

        ``created`` is ``False`` when the request's dedupe key is held by an
        unfinished task: that task's id is returned instead of a new one.
        """
        if not requests:
            return []
        if conn is not None:
            return await _enqueue(conn, requests)
        async with self.pool.connection() as pooled:
            return await _enqueue(pooled, requests)

    async def enqueue_returning(self, request: EnqueueRequest) -> tuple[Task, bool]:
        """Insert one request and return its row as stored, and whether it was created.

        The row comes back with the insert (one statement): nothing is read
        after the commit, so once the task exists no error can follow that
        would make a caller submit it again. ``created`` is ``False`` when the
        dedupe key is held by an unfinished task: that task is returned.
        """
        async with self.pool.connection() as conn:
            task = await _insert_one(conn, request)
            if task is not None:
                return task, True
            [(task_id, created)] = await _enqueue(conn, [request])
            return await self._get(conn, task_id), created

    @staticmethod
    async def enqueue_reserved(
        conn: AsyncConn, request: EnqueueRequest, task_id: int
    ) -> Task | None:
        """Insert ``request`` under ``task_id`` (reserved from ``tickbase.tasks_id_seq``)
        on the caller's connection, in its transaction; return the row as stored.

        None: the request's dedupe key is held by an unfinished task, and nothing
        was written (the caller decides what its reservation then means).
        """
        return await _insert_one(conn, request, task_id)

    @staticmethod
    async def enqueue_linked(
        conn: AsyncConn, tasks: Sequence[LinkedTask]
    ) -> list[tuple[int, int | None, datetime | None, str | None]]:
        """Insert fires and workflow steps on the caller's connection, in its
        transaction; return ``(id, schedule_id, fire_at, step)`` per task created.

        A fire already enqueued (same schedule and instant) is skipped, never
        doubled, and is missing from the result.
        """
        if not tasks:
            return []
        with domain_errors():
            cursor = await conn.execute(
                Q["task_enqueue_linked"], _linked_params(tasks), prepare=True
            )
        return [(row[0], row[1], row[2], row[3]) for row in await cursor.fetchall()]

    @staticmethod
    async def cancel_many(
        conn: AsyncConn, task_ids: Sequence[int], *, reason: str | None = None
    ) -> list[tuple[int, TaskStatus, TaskStatus | None]]:
        """Cancel tasks on the caller's connection; return ``(id, before, after)`` per
        task found (``after`` None: it was final already and is unchanged).

        Pending and retrying tasks end ``cancelled`` at once; a running task stays
        ``running`` with ``cancel_requested`` until its handler stops.
        """
        detail = None if reason is None else f'{{"reason": {_json_string(reason)}}}'
        cursor = await conn.execute(
            Q["task_cancel_many"], {"ids": list(task_ids), "detail": detail}
        )
        return [
            (row[0], TaskStatus(row[1]), None if row[2] is None else TaskStatus(row[2]))
            for row in await cursor.fetchall()
        ]

    async def claim(
        self,
        conn: AsyncConn,
        *,
        node_id: str,
        limit: int,
        queues: Sequence[str] | None,
        lease_seconds: float,
        task_types: Sequence[str] | None = None,
    ) -> list[ClaimedTask]:
        """Claim up to ``limit`` due tasks for ``node_id``.

        ``task_types`` (None: any) are the types the claimer can run; tasks of
        other types stay pending for a worker that can.
        """
        params = _claim_params(node_id, limit, queues, lease_seconds, task_types)
        cursor = await conn.execute(Q["task_claim"], params, prepare=True)
        return [ClaimedTask(*row) for row in await cursor.fetchall()]

    async def claim_limited(
        self,
        conn: AsyncConn,
        *,
        node_id: str,
        limit: int,
        queues: Sequence[str] | None,
        lease_seconds: float,
        task_types: Sequence[str] | None = None,
    ) -> list[ClaimedTask] | None:
        """Claim up to ``limit`` due tasks governed by a limit, within every limit.

        ``None`` when no such task was due (nothing to retry soon); an empty
        list when some were due but every one is held back by its limits.
        """
        params = {
            **_claim_params(node_id, limit, queues, lease_seconds, task_types),
            "lock_key": LIMITS_LOCK_KEY,
        }
        async with conn.transaction():
            gate = await conn.execute(Q["task_claim_limited_gate"], params, prepare=True)
            if await gate.fetchone() is None:
                return None
            cursor = await conn.execute(Q["task_claim_limited"], params, prepare=True)
            return [ClaimedTask(*row) for row in await cursor.fetchall()]

    async def next_run_at(
        self,
        conn: AsyncConn,
        queues: Sequence[str] | None,
        task_types: Sequence[str] | None = None,
    ) -> datetime | None:
        """When the next waiting (not yet due) task of these queues and types becomes due."""
        params = {
            "queues": list(queues) if queues else None,
            "types": list(task_types) if task_types is not None else None,
        }
        cursor = await conn.execute(Q["task_next_run_at"], params, prepare=True)
        row = await cursor.fetchone()
        return row[0] if row else None

    async def finish_many(self, conn: AsyncConn, node_id: str, outcomes: Sequence[Outcome]) -> int:
        """Record a batch of outcomes in one statement; return how many were accepted."""
        cursor = await conn.execute(
            Q["task_finish_many"],
            {
                "node_id": node_id,
                "ids": [o.task_id for o in outcomes],
                "attempts": [o.attempt for o in outcomes],
                "outcomes": [o.kind.value for o in outcomes],
                "results": [o.result for o in outcomes],
                "errors": [o.error for o in outcomes],
                "delays": [o.delay for o in outcomes],
            },
            prepare=False,
        )
        row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def heartbeat(
        self, conn: AsyncConn, node_id: str, ids: Sequence[int], lease_seconds: float
    ) -> list[tuple[int, bool]]:
        """Renew leases; return ``(id, lost)`` for tasks to stop (cancel requested or lost)."""
        cursor = await conn.execute(
            Q["task_heartbeat"],
            {"node_id": node_id, "ids": list(ids), "lease_seconds": lease_seconds},
            prepare=True,
        )
        return [(row[0], row[2]) for row in await cursor.fetchall()]

    async def rescue(
        self,
        conn: AsyncConn | None = None,
        *,
        dead_nodes: Sequence[str] = (),
        node_id: str | None = None,
        now: datetime | None = None,
        limit: int = 1000,
        unless_leader: bool = False,
    ) -> list[tuple[int, str]]:
        """Re-queue or fail running tasks of ``dead_nodes`` or with an expired
        lease (as of ``now``); return ``(id, new status)`` of each.

        ``unless_leader``: do nothing while the cluster has a live leader (a
        worker's fallback for clusters without a scheduler-role node)."""
        params = {
            "dead_nodes": list(dead_nodes),
            "node_id": node_id,
            "now": now,
            "limit": limit,
            "unless_leader": unless_leader,
        }
        if conn is None:
            async with self.pool.connection() as pooled:
                cursor = await pooled.execute(Q["task_rescue"], params)
                return [(row[0], row[1]) for row in await cursor.fetchall()]
        cursor = await conn.execute(Q["task_rescue"], params)
        return [(row[0], row[1]) for row in await cursor.fetchall()]

    async def cancel(self, task_id: int, *, reason: str | None = None) -> TaskStatus:
        """Cancel a task; return its status after the call.

        Pending and retrying tasks end ``cancelled`` at once; a running task stays
        ``running`` with ``cancel_requested`` until its handler stops.
        """
        async with self.pool.connection() as conn:
            changed = await self.cancel_many(conn, [task_id], reason=reason)
        if not changed:
            raise TaskNotFound(task_id)
        [(_, previous, status)] = changed
        if status is None:
            raise InvalidTransition(task_id, previous, "cancel")
        return TaskStatus(status)

    async def retry(self, task_id: int) -> int:
        """Enqueue a copy of a failed or cancelled task; return the new task's id."""
        async with self.pool.connection() as conn:
            try:
                cursor = await conn.execute(Q["task_retry"], {"ids": [task_id]})
                row = await cursor.fetchone()
            except psycopg.errors.IntegrityError as exc:
                # The copy keeps the dedupe key, which another task took meanwhile.
                task = await self._get(conn, task_id)
                error = domain_error(exc, {"dedupe_key": task.dedupe_key})
                if not isinstance(error, InvalidTask):
                    raise
                raise InvalidTask(
                    error.field,
                    error.value,
                    f"{error.reason}: retry task {task_id} once that one ends",
                ) from None
            if row is not None:
                return int(row[1])
            task = await self._get(conn, task_id)
        raise InvalidTransition(task_id, task.status, "retry (only failed or cancelled tasks)")

    async def get(self, task_id: int) -> Task:
        """The task with this id, or :class:`TaskNotFound`."""
        async with self.pool.connection() as conn:
            return await self._get(conn, task_id)

    async def list_tasks(
        self,
        task_filter: TaskFilter | None = None,
        *,
        status: str | None = None,
        queue: str | None = None,
        task_type: str | None = None,
        before_id: int | None = None,
        limit: int = 50,
    ) -> list[Task]:
        """Tasks newest first, filtered; page with ``before_id`` = the last id seen.

        ``task_filter`` says everything a filter can (node, time range, JSON
        conditions); ``status``, ``queue`` and ``task_type`` are shorthands."""
        if task_filter is None:
            task_filter = TaskFilter(status=status, queue=queue, task_type=task_type)
        async with self.pool.connection() as conn:
            return await listing.list_tasks(conn, task_filter, before_id=before_id, limit=limit)

    async def bulk_action(
        self,
        task_filter: TaskFilter,
        action: listing.BulkKind,
        *,
        dry_run: bool,
        up_to_id: int | None = None,
        actor: str,
        actor_token_id: int | None = None,
    ) -> listing.BulkResult:
        """Count (``dry_run``) or cancel/retry every task matching the filter,
        with an audit row of who did it (see :mod:`tickbase.queue.listing`).

        A run is given the ``up_to_id`` its dry run answered, and acts on the
        tasks the dry run counted that still match."""
        if action not in ("cancel", "retry"):
            raise InvalidTask("action", action, "use cancel or retry")
        if not dry_run and up_to_id is None:
            raise InvalidTask("upToId", None, "run the dry run first and pass its upToId")
        async with self.pool.connection() as conn, conn.transaction():
            ids = await listing.match_ids(
                conn, task_filter, up_to_id=up_to_id, limit=listing.BULK_MAX + 1
            )
            if len(ids) > listing.BULK_MAX:
                raise InvalidTask(
                    "filter",
                    task_filter.to_dict(),
                    f"matches more than {listing.BULK_MAX} tasks: narrow it "
                    "(status, type, time range)",
                )
            if dry_run:
                newest = ids[0] if ids else 0
                return listing.BulkResult(action, True, len(ids), 0, newest)
            assert up_to_id is not None
            if action == "cancel":
                outcome = await self.cancel_many(conn, ids, reason="bulk cancel")
                changed = sum(1 for _, _, after in outcome if after is not None)
            else:
                # A copy keeps its task's dedupe key: one held by an unfinished task
                # refuses the whole run (rolled back, no audit row), naming the key.
                with domain_errors():
                    cursor = await conn.execute(Q["task_retry"], {"ids": ids})
                changed = len(await cursor.fetchall())
            audit_id, at = await listing.record_bulk_action(
                conn,
                task_filter,
                action,
                up_to_id=up_to_id,
                matched=len(ids),
                changed=changed,
                actor=actor,
                actor_token_id=actor_token_id,
            )
        return listing.BulkResult(action, False, len(ids), changed, up_to_id, audit_id, at)

    async def bulk_actions(
        self, *, before_id: int | None = None, limit: int = 50
    ) -> list[listing.BulkRecord]:
        """The bulk actions' audit rows, newest first."""
        async with self.pool.connection() as conn:
            return await listing.bulk_actions(conn, before_id=before_id, limit=limit)

    async def events(self, task_id: int) -> list[TaskEvent]:
        """The task's lifecycle log, oldest first."""
        async with self.pool.connection() as conn:
            cursor = await conn.execute(Q["task_events_list"], {"id": task_id})
            return [TaskEvent(*row) for row in await cursor.fetchall()]

    async def prune(
        self, *, older_than_days: float, batch_size: int = 1000, now: datetime | None = None
    ) -> int:
        """Delete finished tasks (and their events) older than the retention, in batches."""
        removed = 0
        while True:
            async with self.pool.connection() as conn:
                cursor = await conn.execute(
                    Q["task_prune"],
                    {
                        "older_than_seconds": older_than_days * 86400.0,
                        "limit": batch_size,
                        "now": now,
                    },
                )
                removed += cursor.rowcount
            if cursor.rowcount < batch_size:
                return removed

    async def count_unfinished(self) -> int:
        """Tasks not yet in a final state."""
        async with self.pool.connection() as conn:
            row = await (await conn.execute(Q["task_count_unfinished"])).fetchone()
            return int(row[0]) if row else 0

    async def counts(self) -> list[tuple[str, str, int]]:
        """``(queue, status, count)`` for every combination present."""
        async with self.pool.connection() as conn:
            rows = await (await conn.execute(Q["task_count_by_status"])).fetchall()
            return [(row[0], row[1], int(row[2])) for row in rows]

    async def _get(self, conn: AsyncConn, task_id: int) -> Task:
        cursor = conn.cursor(row_factory=dict_row)
        await cursor.execute(Q["task_get"], {"id": task_id})
        row = await cursor.fetchone()
        if row is None:
            raise TaskNotFound(task_id)
        return Task.from_row(row)


def _claim_params(
    node_id: str,
    limit: int,
    queues: Sequence[str] | None,
    lease_seconds: float,
    task_types: Sequence[str] | None,
) -> dict[str, Any]:
    return {
        "node_id": node_id,
        "limit": limit,
        "queues": list(queues) if queues else None,
        "lease_seconds": lease_seconds,
        "types": list(task_types) if task_types is not None else None,
    }


async def _insert_one(
    conn: AsyncConn, request: EnqueueRequest, task_id: int | None = None
) -> Task | None:
    """One request inserted (under ``task_id`` when reserved), as stored; None: its
    dedupe key is held by an unfinished task."""
    cursor = conn.cursor(row_factory=dict_row)
    with domain_errors():
        await cursor.execute(
            Q["task_enqueue_one"], _enqueue_one_params(request, task_id), prepare=True
        )
    row = await cursor.fetchone()
    return None if row is None else Task.from_row(row)


def _enqueue_one_params(r: EnqueueRequest, task_id: int | None = None) -> dict[str, Any]:
    return {
        "id": task_id,
        "task_type": r.task_type,
        "queue": r.queue,
        "priority": r.priority,
        "payload": r.payload_json,
        "max_attempts": r.max_attempts,
        "retry_delay": float(r.retry_delay),
        "timeout": r.timeout,
        "run_at": r.run_at,
        "delay": r.delay,
        "dedupe_key": r.dedupe_key,
        "request_id": r.request_id,
        "concurrency_key": r.concurrency_key,
        "concurrency_limit": r.concurrency_limit,
    }


def _enqueue_params(requests: Sequence[EnqueueRequest]) -> dict[str, Any]:
    rows = []
    for r in requests:
        # Defaults are left out (the statement fills them): less JSON to send and parse.
        row: dict[str, Any] = {"task_type": r.task_type, "payload": orjson.Fragment(r.payload_json)}
        if r.queue != DEFAULT_QUEUE:
            row["queue"] = r.queue
        if r.priority:
            row["priority"] = r.priority
        if r.max_attempts != 1:
            row["max_attempts"] = r.max_attempts
        if r.retry_delay != 1.0:
            row["retry_delay"] = r.retry_delay
        for name in _OPTIONAL_FIELDS:
            value = getattr(r, name)
            if value is not None:
                row[name] = value
        rows.append(row)
    return {"batch": orjson.dumps(rows).decode()}


def _linked_params(tasks: Sequence[LinkedTask]) -> dict[str, Any]:
    rows = [
        {
            "id": t.task_id,
            "task_type": t.request.task_type,
            "queue": t.request.queue,
            "priority": t.request.priority,
            "payload": orjson.Fragment(t.request.payload_json),
            "max_attempts": t.request.max_attempts,
            "retry_delay": float(t.request.retry_delay),
            "timeout": t.request.timeout,
            "schedule_id": t.schedule_id,
            "fire_at": t.fire_at,
            "workflow_run_id": t.workflow_run_id,
            "step": t.step,
            "inputs": t.inputs,
        }
        for t in tasks
    ]
    return {"tasks": orjson.dumps(rows).decode()}


_OPTIONAL_FIELDS = (
    "timeout",
    "run_at",
    "delay",
    "dedupe_key",
    "request_id",
    "concurrency_key",
    "concurrency_limit",
)


async def _enqueue(conn: AsyncConn, requests: Sequence[EnqueueRequest]) -> list[tuple[int, bool]]:
    with domain_errors():
        if len(requests) == 1:
            cursor = await conn.execute(
                Q["task_enqueue_one"], _enqueue_one_params(requests[0]), prepare=True
            )
            row = await cursor.fetchone()
            ids: list[int | None] = [row[0] if row else None]
        else:
            cursor = await conn.execute(
                Q["task_enqueue_many"], _enqueue_params(requests), prepare=True
            )
            ids = [row[0] for row in await cursor.fetchall()]
    result: list[tuple[int, bool]] = []
    missing = [r.dedupe_key for r, task_id in zip(requests, ids, strict=True) if task_id is None]
    holders: dict[str, int] = {}
    if missing:
        cursor = await conn.execute(Q["task_find_active_by_dedupe_keys"], {"dedupe_keys": missing})
        holders = {row[1]: row[0] for row in await cursor.fetchall()}
    for request, task_id in zip(requests, ids, strict=True):
        if task_id is not None:
            result.append((task_id, True))
        elif request.dedupe_key in holders:
            result.append((holders[request.dedupe_key], False))
        else:
            # The holder finished between our insert and the lookup: the key is
            # free again, so enqueue this request afresh.
            [again] = await _enqueue(conn, [request])
            result.append(again)
    return result


def _json_string(text: str) -> str:
    import json

    return json.dumps(text)
