"""The ticker: turns due schedules into tasks, on time, once.

Overview
    Any number of tickers may run (``tickbase scheduler``, ``tickbase up``). The
    one whose node leads (``cluster.election``, shared with the housekeeper)
    ticks; the others wait to take over. A tick
    locks the due schedules (``FOR UPDATE SKIP LOCKED``), plans their fires
    (``firing.plan_fires``), enqueues the fires, records what did not fire and
    advances each schedule, in one transaction.

Timeliness
    Between ticks the ticker sleeps until the earliest ``next_fire_at``,
    measured on the database clock, and wakes early on a NOTIFY from any change
    to a schedule or on a change of leader. No
    fixed scan interval.

Failure cases
    A killed leader: its lease expires, another ticker takes it and catches up
    every fire still within its schedule's misfire grace, each once (fires are
    unique by schedule and instant). A deposed leader that wakes up: its fenced
    statements write nothing (``LeaseLost`` rolls the tick back); it stands down.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from tickbase.cluster.election import LeaderElection
from tickbase.cluster.lease import Lease, leader_idle_ms
from tickbase.db.listener import Listener
from tickbase.db.pool import AsyncConn
from tickbase.errors import LeaseLost
from tickbase.queue.models import LinkedTask
from tickbase.queue.repository import TaskQueue
from tickbase.scheduler.firing import FirePlan, plan_fires
from tickbase.scheduler.store import Q, fire_task
from tickbase.scheduler.triggers import make_trigger
from tickbase.service import Backoff, Service

logger = logging.getLogger("tickbase.scheduler")

DUE_BATCH = 1000  # schedules handled per statement; more are taken in the next pass
IDLE_WAKE_MAX = 60.0  # seconds: sleep at most this long even with nothing scheduled


class Ticker(Service):
    """The scheduler role of one process: fires due schedules while this node leads.

    Leadership comes from ``election`` (shared with the housekeeper); without
    one the ticker runs an election of its own for the time it runs.

    Example::

        ticker = Ticker(pool, listener, node_id="host:42")
        await ticker.start(); ...; await ticker.stop()
    """

    name = "ticker"

    def __init__(
        self,
        pool: AsyncConnectionPool[AsyncConn],
        listener: Listener,
        *,
        node_id: str,
        lease_ttl: float = 15.0,
        election: LeaderElection | None = None,
        skip_task_types: Sequence[str] = (),
    ) -> None:
        super().__init__()
        self.pool = pool
        # LIKE patterns of task types whose schedules this ticker never fires
        # (they stay stored, and fire again under a ticker that does not skip them).
        self.skip_task_types = list(skip_task_types)
        self.listener = listener
        self.node_id = node_id
        self._owns_election = election is None
        self.election = election or LeaderElection(pool, listener, node_id=node_id, ttl=lease_ttl)
        self.fired = 0
        self.ticks = 0
        self._wake = asyncio.Event()

    @property
    def lease(self) -> Lease:
        """The leader lease this ticker's fires are fenced by."""
        return self.election.lease

    def on_stop_requested(self) -> None:
        self._wake.set()

    async def serve(self) -> None:
        """Tick while leading, until stopped."""
        unsubscribe = self.listener.subscribe("tickbase_schedules", self._on_change, self._wake.set)
        unwatch = self.election.on_change(lambda _leading: self._wake.set())
        await self.listener.start()
        if self._owns_election:
            await self.election.start()
        self.mark_started()
        backoff = Backoff()
        try:
            while not self.stopping:
                self._wake.clear()
                sleep_for = self.lease.renew_interval
                try:
                    if self.election.leading:
                        await self.tick()
                        sleep_for = await self._until_next_due()
                    backoff.reset()
                except LeaseLost:
                    logger.warning(
                        "%s is no longer the leader: its fenced write was refused; standing by",
                        self.node_id,
                    )
                    sleep_for = 0.0
                except (psycopg.Error, OSError) as exc:
                    sleep_for = backoff.next()
                    logger.warning("scheduler tick failed (%s); retrying in %.1fs", exc, sleep_for)
                # Woken early by a schedule change, a change of leader, or a stop.
                await self.sleep(sleep_for, self._wake)
        finally:
            unsubscribe()
            unwatch()
            if self._owns_election:
                await self.election.stop()

    def _on_change(self, _payload: str) -> None:
        self._wake.set()

    async def _until_next_due(self, now: datetime | None = None) -> float:
        """Seconds from ``now`` (``None``: the database clock) to the next fire."""
        async with self.pool.connection() as conn:
            row = await (
                await conn.execute(
                    Q["schedule_next_due"],
                    {"skip": self.skip_task_types, "now": now},
                    prepare=True,
                )
            ).fetchone()
        if row is None or row[0] is None:
            return IDLE_WAKE_MAX
        next_due, db_now = row
        wait: float = (next_due - db_now).total_seconds()
        return max(0.0, min(wait, IDLE_WAKE_MAX))

    async def tick(self, *, now: datetime | None = None) -> int:
        """Fire everything due now (in passes of DUE_BATCH); return the number of fires.

        ``now``: the instant to tick at (``None``: the database clock), for a
        test about what a tick does rather than about waking on time. It sets
        what is due and which fires are missed; the lease fence stays on the
        database clock (whether this node leads is a question of real time)."""
        fired = 0
        while True:
            count, full = await self._tick_once(now)
            fired += count
            if not full:
                break
        self.ticks += 1
        self.fired += fired
        return fired

    async def _tick_once(self, now: datetime | None = None) -> tuple[int, bool]:
        token = self.lease.token
        if token is None:
            return 0, False
        fence = {"lease": self.lease.name, "holder": self.node_id, "token": token}
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(Q["tick_begin"], {"idle_ms": leader_idle_ms(self.lease.ttl)})
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(
                Q["schedule_due"],
                {"limit": DUE_BATCH, "skip": self.skip_task_types, "now": now},
                prepare=True,
            )
            due = await cursor.fetchall()
            if not due:
                return 0, False
            fires: list[LinkedTask] = []
            advances: list[dict[str, Any]] = []
            events: list[dict[str, Any]] = []
            for row in due:
                plan = _plan(row)
                for fire_at in plan.fires:
                    fires.append(fire_task(row, fire_at))
                for event, event_fire_at, detail in plan.events:
                    events.append(
                        {
                            "schedule_id": row["id"],
                            "event": event,
                            "fire_at": event_fire_at,
                            "detail": detail,
                        }
                    )
                advances.append(
                    {
                        "id": row["id"],
                        "expected": row["next_fire_at"],
                        "next_fire_at": plan.next_fire_at,
                        "last_fire_at": plan.fires[-1] if plan.fires else None,
                    }
                )
            # The fenced advance goes first: when it writes nothing, someone
            # else leads now, and the transaction rolls back before any fire.
            cursor = await conn.execute(
                Q["schedule_advance_many"], {**fence, "advances": _json(advances)}, prepare=True
            )
            if cursor.rowcount == 0:
                # Fenced out: raised inside the transaction, so no fire commits.
                self.election.lost()
                raise LeaseLost(self.node_id, token)
            inserted = len(await TaskQueue.enqueue_linked(conn, fires))
            if events:
                await conn.execute(Q["schedule_events_add"], {"events": _json(events)})
            if inserted < len(fires):
                logger.info(
                    "%d fires were already enqueued (skipped, not doubled)", len(fires) - inserted
                )
        return inserted, len(due) == DUE_BATCH


def _plan(row: dict[str, Any]) -> FirePlan:
    trigger = make_trigger(
        row["kind"], row["cron"], row["interval_seconds"], row["timezone"], row["next_fire_at"]
    )
    assert trigger is not None  # manual schedules are never due
    return plan_fires(
        trigger=trigger,
        next_fire_at=row["next_fire_at"],
        now=row["now"],
        misfire_grace_seconds=row["misfire_grace_seconds"],
        coalesce=row["coalesce"],
        max_instances=row["max_instances"],
        outstanding=row["outstanding"],
    )


def _json(rows: list[dict[str, Any]]) -> str:
    return orjson.dumps(rows).decode()


__all__ = ["Ticker"]
