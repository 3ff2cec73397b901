"""The gateway's one ear on the database: LISTEN once, fan out in memory.

Overview
    A gateway process holds one listening connection (the App's listener).
    ``tickbase_task_done`` (ids of tasks that reached a final state) and
    ``tickbase_task_started`` (ids of requested tasks a worker claimed) wake
    the requests waiting on those tasks; ``tickbase_alerts`` goes to every
    subscriber of the ``alert`` channel. Nothing that matters is held here: a
    request's truth is its ledger row and its task row.

Failure cases
    After the listening connection is lost and re-established, every watched
    task is read again (a NOTIFY sent meanwhile is gone), so no result is
    missed; a slow poll of watched tasks covers the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import orjson
from psycopg_pool import AsyncConnectionPool

from tickbase.db.listener import Listener
from tickbase.db.pool import AsyncConn
from tickbase.db.sqlfile import load_queries
from tickbase.service import Service

Q = load_queries("tickbase.gateway")
logger = logging.getLogger("tickbase.gateway")

FINAL = frozenset({"succeeded", "failed", "cancelled"})
RECENT_SECONDS = 60.0
RECENT_MAX = 10_000
SAFETY_POLL_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class TaskState:
    """What a waiting request learns about its task."""

    task_id: int
    status: str
    result: Any = None
    error: Any = None

    @property
    def final(self) -> bool:
        return self.status in FINAL


TaskWatcher = Callable[[TaskState], None]
AlertWatcher = Callable[[dict[str, Any]], None]
RevocationWatcher = Callable[[], None]


class Hub(Service):
    """Fan-out of task and alert notifications to this process's connections."""

    name = "hub"

    def __init__(self, pool: AsyncConnectionPool[AsyncConn], listener: Listener) -> None:
        super().__init__()
        self.pool = pool
        self.listener = listener
        self._watchers: dict[int, set[TaskWatcher]] = defaultdict(set)
        # Watches that also want "running" (most want only the end): a started
        # task is read only for them.
        self._progress: dict[int, int] = defaultdict(int)
        # Tasks reported final lately: a watch begun just after its task's
        # NOTIFY arrived reads the task once; other new watches need no read.
        self._recently_final: dict[int, float] = {}
        self._alert_watchers: set[AlertWatcher] = set()
        self._token_watchers: dict[int, set[RevocationWatcher]] = defaultdict(set)
        self._unsubscribe: list[Callable[[], None]] = []
        self._checks: set[asyncio.Task[None]] = set()

    async def serve(self) -> None:
        """Fan notifications out until stopped; a slow poll covers lost ones."""
        self._unsubscribe = [
            self.listener.subscribe("tickbase_task_done", self._on_done, self._on_reconnect),
            self.listener.subscribe("tickbase_task_started", self._on_started),
            self.listener.subscribe("tickbase_alerts", self._on_alert),
            self.listener.subscribe(
                "tickbase_token_revoked", self._on_revoked, self._on_tokens_reconnect
            ),
        ]
        await self.listener.start()
        self.mark_started()
        try:
            while not await self.sleep(SAFETY_POLL_SECONDS):
                try:
                    await self.check(list(self._watchers))
                    await self.check_tokens()
                except Exception as exc:  # a database hiccup must not end the poll
                    logger.warning("gateway poll of watched tasks failed (%s)", exc)
        finally:
            for unsubscribe in self._unsubscribe:
                unsubscribe()
            checks = list(self._checks)
            for task in checks:
                task.cancel()
            await asyncio.gather(*checks, return_exceptions=True)

    # ---- tasks -------------------------------------------------------------------

    def watch(
        self, task_id: int, watcher: TaskWatcher, *, progress: bool = False
    ) -> Callable[[], None]:
        """Call ``watcher`` when the task ends (and, with ``progress``, when it starts)."""
        self._watchers[task_id].add(watcher)
        if progress:
            self._progress[task_id] += 1
        if progress or task_id in self._recently_final:
            # It may have started (or ended) before the watch began.
            self._spawn([task_id])

        def unwatch() -> None:
            watchers = self._watchers.get(task_id)
            if watchers is not None and watcher in watchers:
                watchers.discard(watcher)
                if progress:
                    self._progress[task_id] -= 1
                if not watchers:
                    del self._watchers[task_id]
                    self._progress.pop(task_id, None)

        return unwatch

    async def check(self, task_ids: list[int]) -> None:
        """Read these tasks and tell their watchers (final states end the watch)."""
        ids = [task_id for task_id in task_ids if task_id in self._watchers]
        if not ids:
            return
        async with self.pool.connection() as conn:
            cursor = await conn.execute(Q["request_states"], {"ids": ids})
            rows = await cursor.fetchall()
        for task_id, status, result, error in rows:
            state = TaskState(task_id, status, result, error)
            for watcher in list(self._watchers.get(task_id, ())):
                try:
                    watcher(state)
                except Exception:
                    logger.exception("a task watcher failed")
            if state.final:
                self._watchers.pop(task_id, None)
                self._progress.pop(task_id, None)

    def _on_done(self, payload: str) -> None:
        now = time.monotonic()
        ids = []
        for task_id in parse_ids(payload):
            self._recently_final[task_id] = now
            if task_id in self._watchers:
                ids.append(task_id)
        if len(self._recently_final) > RECENT_MAX:
            cutoff = now - RECENT_SECONDS
            self._recently_final = {k: v for k, v in self._recently_final.items() if v > cutoff}
        if ids:
            self._spawn(ids)

    def _on_started(self, payload: str) -> None:
        ids = [task_id for task_id in parse_ids(payload) if self._progress.get(task_id)]
        if ids:
            self._spawn(ids)

    def _on_reconnect(self) -> None:
        self._spawn(list(self._watchers))

    def _spawn_work(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._checks.add(task)
        task.add_done_callback(self._checks.discard)

    def _spawn(self, ids: list[int]) -> None:
        self._spawn_work(self.check(ids))

    # ---- alerts ------------------------------------------------------------------

    def watch_alerts(self, watcher: AlertWatcher) -> Callable[[], None]:
        self._alert_watchers.add(watcher)
        return lambda: self._alert_watchers.discard(watcher)

    def _on_alert(self, payload: str) -> None:
        try:
            alert = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return
        for watcher in list(self._alert_watchers):
            try:
                watcher(alert)
            except Exception:
                logger.exception("an alert watcher failed")

    # ---- token revocations ---------------------------------------------------------

    def watch_token(self, token_id: int, watcher: RevocationWatcher) -> Callable[[], None]:
        """Call ``watcher`` once when the token is revoked (by any process)."""
        self._token_watchers[token_id].add(watcher)

        def unwatch() -> None:
            watchers = self._token_watchers.get(token_id)
            if watchers is not None:
                watchers.discard(watcher)
                if not watchers:
                    del self._token_watchers[token_id]

        return unwatch

    async def check_tokens(self) -> None:
        """Tell the watchers of every watched token that is no longer live."""
        ids = list(self._token_watchers)
        if not ids:
            return
        async with self.pool.connection() as conn:
            cursor = await conn.execute(Q["tokens_revoked_among"], {"ids": ids})
            revoked = [token_id for (token_id,) in await cursor.fetchall()]
        for token_id in revoked:
            self._revoked(token_id)

    def _on_revoked(self, payload: str) -> None:
        for token_id in parse_ids(payload):
            self._revoked(token_id)

    def _on_tokens_reconnect(self) -> None:
        self._spawn_work(self.check_tokens())

    def _revoked(self, token_id: int) -> None:
        for watcher in self._token_watchers.pop(token_id, set()):
            try:
                watcher()
            except Exception:
                logger.exception("a revocation watcher failed")


def parse_ids(payload: str) -> list[int]:
    """The task (or token) ids of a NOTIFY payload: comma-separated, bad parts skipped."""
    ids = []
    for part in payload.split(","):
        with contextlib.suppress(ValueError):
            ids.append(int(part))
    return ids
