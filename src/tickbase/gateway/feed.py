"""Live dashboard figures and task changes, read once per gateway process.

Overview
    The WebSocket channels ``tasks`` and ``stats`` (and the dashboard's
    polling fallback, ``GET /api/v1/dashboard/overview``) are served from one
    :class:`DashboardFeed` per gateway process. Whatever the number of open
    dashboards, the database sees the same reads: one task-changes query per
    beat (at most every :data:`MIN_BEAT_SECONDS`, woken by the process's
    single LISTEN connection, else every :data:`BEAT_SECONDS`) while anyone
    watches ``tasks``; the cluster figures from the shared
    :class:`~tickbase.gateway.figures.ClusterFigures` cache and the
    throughput chart at most once per :data:`STATS_SECONDS`. Nobody
    watching: no query at all.

What a ``tasks`` push holds
    ``{"tasks": [summary, ...]}``: tasks created since the last beat, tasks
    that started, and tasks that left the running set or were reported
    ended, as summaries (no payload, result or error: a page that shows those
    reads the task). A page merges them into what it shows.

Failure cases
    A beat that fails (the database away) is logged once per outage and
    retried on the next beat; a NOTIFY lost while the listener reconnected
    costs nothing, because every beat reads the running set and new ids
    whether or not it was woken.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool
from pydantic.alias_generators import to_camel

from tickbase.cluster.alerts import AlertStore
from tickbase.cluster.metrics import public_stats
from tickbase.db.listener import Listener
from tickbase.db.pool import AsyncConn
from tickbase.db.sqlfile import load_queries
from tickbase.gateway.dashboard_schemas import OverviewOut
from tickbase.gateway.figures import ClusterFigures
from tickbase.gateway.hub import parse_ids
from tickbase.service import Service

Q = load_queries("tickbase.gateway")
logger = logging.getLogger("tickbase.gateway.feed")

BEAT_SECONDS = 1.0
MIN_BEAT_SECONDS = 0.25
STATS_SECONDS = 2.0
CHANGES_LIMIT = 1000
OPEN_ALERTS = 10
FEED_CHANNELS = ("tasks", "stats")

FeedWatcher = Callable[[dict[str, Any]], None]


def task_summary(row: dict[str, Any]) -> dict[str, Any]:
    """A task row of the feed in the API's camelCase, times as ISO 8601."""
    return {
        to_camel(key): value.isoformat() if hasattr(value, "isoformat") else value
        for key, value in row.items()
    }


class DashboardFeed(Service):
    """One reader of task changes and figures for every dashboard of this process."""

    name = "dashboard-feed"

    def __init__(
        self,
        pool: AsyncConnectionPool[AsyncConn],
        listener: Listener,
        figures: ClusterFigures,
        *,
        beat: float = BEAT_SECONDS,
        stats_every: float = STATS_SECONDS,
    ) -> None:
        super().__init__()
        self.pool = pool
        self.listener = listener
        self.figures = figures
        self.beat = beat
        self.stats_every = stats_every
        self._watchers: dict[str, set[FeedWatcher]] = {name: set() for name in FEED_CHANNELS}
        self._wake = asyncio.Event()
        self._told: set[int] = set()
        self._running: set[int] = set()
        self._high_water: int | None = None
        self._overview: dict[str, Any] | None = None
        self._overview_at = 0.0
        self._overview_lock = asyncio.Lock()
        self._failing = False
        self.beats = 0
        """Task-changes queries run (for tests and the dashboard bench)."""

    # ---- subscribers ----------------------------------------------------------------

    def watch(self, channel: str, watcher: FeedWatcher) -> Callable[[], None]:
        """Call ``watcher(content)`` with each push of ``channel`` (``tasks`` or ``stats``)."""
        watchers = self._watchers[channel]
        watchers.add(watcher)
        self._wake.set()
        return lambda: watchers.discard(watcher)

    # ---- the overview, shared by pushes and HTTP ----------------------------------

    async def overview(self) -> dict[str, Any]:
        """The cluster figures and the throughput chart (the API's camelCase JSON),
        at most ``stats_every`` old."""
        async with self._overview_lock:
            now = time.monotonic()
            if self._overview is None or now - self._overview_at >= self.stats_every:
                stats = public_stats(await self.figures.stats())
                async with self.pool.connection() as conn:
                    cursor = await conn.execute(Q["feed_throughput"])
                    minutes = await cursor.fetchall()
                firing = await AlertStore(self.pool).alerts(state="firing", limit=OPEN_ALERTS)
                overview = OverviewOut.model_validate(
                    {
                        "stats": stats,
                        "throughput": [
                            {
                                "minute": minute,
                                "succeeded": succeeded,
                                "failed": failed,
                                "cancelled": cancelled,
                            }
                            for minute, succeeded, failed, cancelled in minutes
                        ],
                        "open_alerts": [alert.to_dict() for alert in firing],
                    }
                )
                self._overview = overview.model_dump(mode="json", by_alias=True)
                self._overview_at = now
            return self._overview

    # ---- the loop ---------------------------------------------------------------------

    async def serve(self) -> None:
        unsubscribe = [
            self.listener.subscribe("tickbase_enqueued", self._on_any),
            self.listener.subscribe("tickbase_task_started", self._on_ids),
            self.listener.subscribe("tickbase_task_done", self._on_ids),
        ]
        await self.listener.start()
        self.mark_started()
        last_stats = 0.0
        try:
            while not self.stopping:
                started = time.monotonic()
                try:
                    if self._watchers["tasks"]:
                        await self._push_task_changes()
                    if self._watchers["stats"] and started - last_stats >= self.stats_every:
                        last_stats = started
                        self._push("stats", await self.overview())
                    self._failing = False
                except Exception as exc:  # the database away: the next beat tries again
                    if not self._failing:
                        logger.warning("dashboard feed read failed (%s); retrying", exc)
                    self._failing = True
                # At most one read per MIN_BEAT_SECONDS however many NOTIFYs come.
                if await self.sleep(MIN_BEAT_SECONDS):
                    break
                self._wake.clear()
                wait = self.beat - (time.monotonic() - started)
                if wait > 0 and await self.sleep(wait, self._wake):
                    break
        finally:
            for undo in unsubscribe:
                undo()

    def _on_any(self, _payload: str) -> None:
        self._wake.set()

    def _on_ids(self, payload: str) -> None:
        if self._watchers["tasks"]:
            self._told.update(parse_ids(payload))
            self._wake.set()

    async def _push_task_changes(self) -> None:
        async with self.pool.connection() as conn:
            if self._high_water is None:
                cursor = await conn.execute(Q["feed_high_water"])
                row = await cursor.fetchone()
                self._high_water = int(row[0]) if row else 0
            told, self._told = self._told, set()
            params = {
                "after_id": self._high_water,
                "ids": sorted(told | self._running),
                "limit": CHANGES_LIMIT,
            }
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(Q["feed_task_changes"], params)
            rows = await cursor.fetchall()
        self.beats += 1
        changed = []
        running = set()
        for row in rows:
            task_id = row["id"]
            if row["status"] == "running":
                running.add(task_id)
            new = task_id > self._high_water
            if new or task_id in told or (task_id in running) != (task_id in self._running):
                changed.append(task_summary(row))
        self._high_water = max([self._high_water, *(row["id"] for row in rows)])
        self._running = running
        if changed:
            self._push("tasks", {"tasks": changed})

    def _push(self, channel: str, content: dict[str, Any]) -> None:
        for watcher in list(self._watchers[channel]):
            try:
                watcher(content)
            except Exception:
                logger.exception("a dashboard feed watcher failed")


__all__ = ["FEED_CHANNELS", "DashboardFeed", "task_summary"]
