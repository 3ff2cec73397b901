"""Schedules in the database: create, change, control, inspect.

Rows become :class:`Schedule` here and nowhere else; constraint violations
become :class:`InvalidSchedule` through :mod:`tickbase.db.errors`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from tickbase.db.errors import domain_errors
from tickbase.db.pool import AsyncConn
from tickbase.db.sqlfile import load_queries
from tickbase.errors import InvalidSchedule, ScheduleNotFound
from tickbase.queue.models import EnqueueRequest, LinkedTask
from tickbase.queue.repository import TaskQueue
from tickbase.scheduler.models import Schedule, ScheduleSpec

Q = load_queries("tickbase.scheduler")


class ScheduleStore:
    """Run-time control of schedules (no restart needed: tickers wake on NOTIFY).

    Example::

        store = ScheduleStore(pool)
        await store.create(ScheduleSpec.build("bars", "md.collect", cron="*/5 * * * *"))
        await store.pause("bars")
    """

    def __init__(self, pool: AsyncConnectionPool[AsyncConn]) -> None:
        self.pool = pool

    async def create(self, spec: ScheduleSpec) -> Schedule:
        """Store a new schedule; a duplicate active name is refused."""
        params = spec.params(first_fire(spec, datetime.now(UTC)))
        async with self.pool.connection() as conn:
            row = await _fetch_one(conn, Q["schedule_insert"], params)
        assert row is not None
        return Schedule.from_row(row)

    async def sync(self, specs: Sequence[ScheduleSpec]) -> int:
        """Register code-defined and builtin schedules idempotently; return how many changed."""
        changed = 0
        now = datetime.now(UTC)
        async with self.pool.connection() as conn:
            for spec in specs:
                cursor = await conn.execute(
                    Q["schedule_sync_code"], spec.params(first_fire(spec, now))
                )
                changed += cursor.rowcount
        return changed

    async def update(self, name: str, **changes: Any) -> Schedule:
        """Change a schedule's definition. A new expression, interval or zone
        recomputes the next fire; other changes keep it."""
        current = await self.get(name)
        timing = ("kind", "cron", "interval_seconds", "timezone")
        if "every" in changes or "cron" in changes or changes.get("manual"):
            every = changes.pop("every", None)
            cron = changes.pop("cron", None)
            manual = changes.pop("manual", False)
            kind_fields = ScheduleSpec.build(
                name, current.spec.task_type, cron=cron, every=every, manual=manual
            )
            changes.update(
                kind=kind_fields.kind,
                cron=kind_fields.cron,
                interval_seconds=kind_fields.interval_seconds,
            )
        unknown = set(changes) - set(ScheduleSpec.__dataclass_fields__)
        if unknown:
            raise InvalidSchedule("field", sorted(unknown), "unknown schedule field")
        spec = dataclasses.replace(current.spec, **changes)
        next_fire = current.next_fire_at
        if any(getattr(spec, key) != getattr(current.spec, key) for key in timing):
            next_fire = first_fire(spec, datetime.now(UTC))
        params = {**spec.params(next_fire), "id": current.id}
        async with self.pool.connection() as conn:
            row = await _fetch_one(conn, Q["schedule_update"], params)
        if row is None:
            raise ScheduleNotFound(name)
        return await self.get(name)

    async def enable(self, name: str) -> Schedule:
        return await self._set_state(name, enabled=True)

    async def disable(self, name: str) -> Schedule:
        return await self._set_state(name, enabled=False)

    async def pause(self, name: str) -> Schedule:
        return await self._set_state(name, paused=True)

    async def resume(self, name: str) -> Schedule:
        return await self._set_state(name, paused=False)

    async def _set_state(
        self, name: str, *, enabled: bool | None = None, paused: bool | None = None
    ) -> Schedule:
        current = await self.get(name)
        waking = (enabled is True and not current.spec.enabled) or (
            paused is False and current.paused
        )
        # Fires that fell while it was off are not caught up: start from now.
        next_fire = first_fire(current.spec, datetime.now(UTC)) if waking else None
        async with self.pool.connection() as conn:
            row = await _fetch_one(
                conn,
                Q["schedule_set_state"],
                {"id": current.id, "enabled": enabled, "paused": paused, "next_fire_at": next_fire},
            )
        if row is None:
            raise ScheduleNotFound(name)
        return await self.get(name)

    async def trigger(
        self, name: str, *, conn: AsyncConn | None = None, task_id: int | None = None
    ) -> tuple[int, datetime]:
        """Fire now (manual): enqueue a task with ``fire_at = now``; return (task id, fire_at).

        ``conn``: run on the caller's connection (in its transaction), so the
        fire commits together with what the caller records about it.
        ``task_id``: an id the caller reserved from ``tickbase.tasks_id_seq``.
        """
        current = await self.get(name)
        if conn is not None:
            return await _trigger(conn, current.id, name, task_id)
        async with self.pool.connection() as own, own.transaction():
            return await _trigger(own, current.id, name, task_id)

    async def remove(self, name: str) -> Schedule:
        """Remove a schedule; its executions (task rows) and events stay."""
        current = await self.get(name)
        async with self.pool.connection() as conn:
            row = await _fetch_one(conn, Q["schedule_remove"], {"id": current.id})
        if row is None:
            raise ScheduleNotFound(name)
        row["latest_status"] = None
        return Schedule.from_row(row)

    async def get(self, name: str) -> Schedule:
        """The active schedule called ``name``, or :class:`ScheduleNotFound` (with a hint)."""
        async with self.pool.connection() as conn:
            row = await _fetch_one(conn, Q["schedule_get"], {"name": name})
            if row is None:
                names = [r[0] for r in await (await conn.execute(Q["schedule_names"])).fetchall()]
                raise ScheduleNotFound(name, names)
        return Schedule.from_row(row)

    async def list_schedules(
        self,
        *,
        include_removed: bool = False,
        after: str | None = None,
        name_contains: str | None = None,
        task_type: str | None = None,
        limit: int | None = None,
    ) -> list[Schedule]:
        """Schedules by name; page with ``after`` = the last name seen (``limit``
        None: every one)."""
        params = {
            "include_removed": include_removed,
            "after": after,
            "name_contains": name_contains,
            "task_type": task_type,
            "limit": limit,
        }
        async with self.pool.connection() as conn:
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(Q["schedule_list"], params)
            return [Schedule.from_row(row) for row in await cursor.fetchall()]

    async def executions(
        self, name: str, *, limit: int = 50, before: datetime | None = None
    ) -> list[dict[str, Any]]:
        """The schedule's executions (its task rows), newest fire first."""
        current = await self.get(name)
        async with self.pool.connection() as conn:
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(
                Q["schedule_executions"], {"id": current.id, "limit": limit, "before": before}
            )
            return list(await cursor.fetchall())

    async def stats(self, name: str) -> dict[str, Any]:
        """Counts by status, average and p95 duration, last and next fire."""
        current = await self.get(name)
        async with self.pool.connection() as conn:
            row = await _fetch_one(conn, Q["schedule_stats"], {"id": current.id})
        assert row is not None
        row["next_fire_at"] = current.next_fire_at
        row["status"] = current.status
        return row

    async def events(self, name: str, *, limit: int = 100) -> list[dict[str, Any]]:
        """Missed, skipped, coalesced and triggered fires, newest first."""
        current = await self.get(name)
        async with self.pool.connection() as conn:
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(Q["schedule_events_list"], {"id": current.id, "limit": limit})
            return list(await cursor.fetchall())


def first_fire(spec: ScheduleSpec, now: datetime) -> datetime | None:
    """The first fire after ``now`` (intervals count from now)."""
    trigger = spec.trigger(anchor=now)
    return None if trigger is None else trigger.next_after(now)


async def _fetch_one(conn: AsyncConn, query: Any, params: dict[str, Any]) -> dict[str, Any] | None:
    cursor = conn.cursor(row_factory=dict_row)
    with domain_errors(_field_values(params)):
        await cursor.execute(query, params)
    return await cursor.fetchone()


def _field_values(params: dict[str, Any]) -> dict[str, Any]:
    """A schedule's values by the field names of :data:`tickbase.db.errors.CONSTRAINTS`."""
    values = dict(params)
    values["queue name"] = params.get("queue")
    values["retries"] = params.get("max_retries")
    return values


def fire_task(row: dict[str, Any], fire_at: datetime, task_id: int | None = None) -> LinkedTask:
    """The task of one fire of the schedule ``row`` (with its task options)."""
    return LinkedTask(
        EnqueueRequest(
            row["task_type"],
            row["payload"],
            queue=row["queue"],
            priority=row["priority"],
            max_attempts=row["max_retries"] + 1,
            retry_delay=float(row["retry_interval"]),
            timeout=row["timeout"],
        ),
        schedule_id=row["id"],
        fire_at=fire_at,
        task_id=task_id,
    )


async def _trigger(
    conn: AsyncConn, schedule_id: int, name: str, task_id: int | None
) -> tuple[int, datetime]:
    """A manual fire on ``conn`` (in a transaction): its task and its 'triggered' event."""
    cursor = conn.cursor(row_factory=dict_row)
    created: list[tuple[int, int | None, datetime | None, str | None]] = []
    while not created:
        # Empty only when another fire stands for the very same microsecond:
        # read the clock again.
        await cursor.execute(Q["schedule_fire_source"], {"id": schedule_id})
        row = await cursor.fetchone()
        if row is None:
            raise ScheduleNotFound(name)
        created = await TaskQueue.enqueue_linked(conn, [fire_task(row, row["fire_at"], task_id)])
    [(fired_id, _, fire_at, _)] = created
    event = {
        "schedule_id": schedule_id,
        "event": "triggered",
        "fire_at": fire_at,
        "task_id": fired_id,
        "detail": {"manual": True},
    }
    await conn.execute(Q["schedule_events_add"], {"events": orjson.dumps([event]).decode()})
    assert fire_at is not None
    return fired_id, fire_at
