"""The ticker: turns due schedules into tasks, on time, once.

Overview
    Any number of tickers may run (``tickbase scheduler``, ``tickbase up``). The
    one holding the leader lease ticks; the others wait to take over. A tick
    locks the due schedules (``FOR UPDATE SKIP LOCKED``), plans their fires
    (``firing.plan_fires``), enqueues the fires, records what did not fire and
    advances each schedule, in one transaction.

Timeliness
    Between ticks the ticker sleeps until the earliest ``next_fire_at``,
    measured on the database clock (the offset to the local clock is taken at
    every tick), and wakes early on a NOTIFY from any change to a schedule. No
    fixed scan interval.

Failure cases
    A killed leader: its lease expires, another ticker takes it and catches up
    every fire still within its schedule's misfire grace, each once (fires are
    unique by schedule and instant). A deposed leader that wakes up: its fenced
    statements write nothing; it sees the lease lost and stands down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Any

import orjson
import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from tickbase.cluster.lease import LEADER_LEASE, Lease
from tickbase.db.listener import Listener
from tickbase.db.pool import AsyncConn
from tickbase.queue.models import LinkedTask
from tickbase.queue.repository import TaskQueue
from tickbase.scheduler.firing import FirePlan, plan_fires
from tickbase.scheduler.store import Q, fire_task
from tickbase.scheduler.triggers import make_trigger

logger = logging.getLogger("tickbase.scheduler")

DUE_BATCH = 1000  # schedules handled per statement; more are taken in the next pass
IDLE_WAKE_MAX = 60.0  # seconds: sleep at most this long even with nothing scheduled


class Ticker:
    """The scheduler role of one process.

    Example::

        ticker = Ticker(pool, listener, node_id="host:42")
        task = asyncio.create_task(ticker.run())
        ...
        ticker.stop(); await task
    """

    def __init__(
        self,
        pool: AsyncConnectionPool[AsyncConn],
        listener: Listener,
        *,
        node_id: str,
        lease_ttl: float = 15.0,
        lease: Lease | None = None,
        skip_task_types: Sequence[str] = (),
    ) -> None:
        self.pool = pool
        # LIKE patterns of task types whose schedules this ticker never fires
        # (they stay stored, and fire again under a ticker that does not skip them).
        self.skip_task_types = list(skip_task_types)
        self.listener = listener
        self.node_id = node_id
        # The ticker keeps the leader lease; the node's housekeeper shares it.
        self.lease = lease or Lease(pool, holder=node_id, name=LEADER_LEASE, ttl=lease_ttl)
        self.fired = 0
        self.ticks = 0
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self.started = asyncio.Event()
        self._force_acquire = False

    def stop(self) -> None:
        """Ask the ticker to stop (idempotent)."""
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        """Tick until :meth:`stop`; give the lease up on the way out."""
        unsubscribe = self.listener.subscribe("tickbase_schedules", self._on_change, self._wake.set)
        unsubscribe_lease = self.listener.subscribe(
            "tickbase_lease_released", self._on_lease_released
        )
        await self.listener.start()
        self.started.set()
        next_renewal = 0.0
        try:
            while not self._stopping.is_set():
                self._wake.clear()
                sleep_for = self.lease.renew_interval
                try:
                    if self._force_acquire or time.monotonic() >= next_renewal:
                        self._force_acquire = False
                        was_leader = self.lease.held
                        if await self.lease.acquire():
                            next_renewal = time.monotonic() + self.lease.renew_interval
                            if not was_leader:
                                logger.info(
                                    "%s is now the scheduler leader (token %s)",
                                    self.node_id,
                                    self.lease.token,
                                )
                        else:
                            # Try again the moment the holder's lease runs out.
                            retry_in = min(
                                self.lease.others_expire_in + 0.05, self.lease.renew_interval
                            )
                            next_renewal = time.monotonic() + retry_in
                            if was_leader:
                                logger.warning("%s lost the scheduler lease", self.node_id)
                    if self.lease.held:
                        await self.tick()
                        sleep_for = min(
                            await self._until_next_due(), next_renewal - time.monotonic()
                        )
                    else:
                        sleep_for = next_renewal - time.monotonic()
                except _Deposed:
                    logger.warning(
                        "%s is no longer the leader: its fenced write was refused; standing by",
                        self.node_id,
                    )
                    next_renewal = time.monotonic()
                    sleep_for = 0.0
                except (psycopg.Error, OSError) as exc:
                    logger.warning("scheduler tick failed (%s); retrying", exc)
                    sleep_for = 0.5
                if sleep_for > 0:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(sleep_for):
                            await self._wake.wait()
        finally:
            unsubscribe()
            unsubscribe_lease()
            with contextlib.suppress(psycopg.Error, OSError):
                await self.lease.release()

    def _on_change(self, _payload: str) -> None:
        self._wake.set()

    def _on_lease_released(self, _payload: str) -> None:
        if not self.lease.held:
            self._force_acquire = True
            self._wake.set()

    async def _until_next_due(self) -> float:
        async with self.pool.connection() as conn:
            row = await (
                await conn.execute(
                    Q["schedule_next_due"], {"skip": self.skip_task_types}, prepare=True
                )
            ).fetchone()
        if row is None or row[0] is None:
            return IDLE_WAKE_MAX
        next_due, db_now = row
        wait: float = (next_due - db_now).total_seconds()
        return max(0.0, min(wait, IDLE_WAKE_MAX))

    async def tick(self) -> int:
        """Fire everything due now (in passes of DUE_BATCH); return the number of fires."""
        fired = 0
        while True:
            count, full = await self._tick_once()
            fired += count
            if not full:
                break
        self.ticks += 1
        self.fired += fired
        return fired

    async def _tick_once(self) -> tuple[int, bool]:
        token = self.lease.token
        if token is None:
            return 0, False
        fence = {"lease": self.lease.name, "holder": self.node_id, "token": token}
        async with self.pool.connection() as conn, conn.transaction():
            # Changes made by the ticker itself do not wake the tickers again.
            await conn.execute("SELECT set_config('tickbase.ticker', 'on', true)")
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(
                Q["schedule_due"],
                {"limit": DUE_BATCH, "skip": self.skip_task_types},
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
                self.lease.lost()
                raise _Deposed()
            inserted = len(await TaskQueue.enqueue_linked(conn, fires))
            if events:
                await conn.execute(Q["schedule_events_add"], {"events": _json(events)})
            if inserted < len(fires):
                logger.info(
                    "%d fires were already enqueued (skipped, not doubled)", len(fires) - inserted
                )
        return inserted, len(due) == DUE_BATCH


class _Deposed(psycopg.Error):
    """Raised inside the tick transaction to roll it back when fenced out."""


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
