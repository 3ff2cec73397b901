"""This process as a node of the cluster: registration, heartbeats, reaping the dead.

Overview
    Every tickbase process that runs a role registers a row in
    ``tickbase.nodes`` and heartbeats (default every 5 s) with its metrics:
    running tasks, CPU and memory (psutil). A node silent for three of its
    intervals is dead: the leader's housekeeping removes it and rescues the
    tasks it was running, without waiting for their leases. A clean shutdown
    deregisters at once.

A live node is never declared dead
    Being declared dead costs a live node its running tasks (they are
    rescued and run again elsewhere) and raises a ``node_down`` alert, so the
    heartbeat must get through whatever else the process is doing:

    * it has a connection of its own (:class:`~tickbase.db.dedicated.DedicatedConnection`,
      ``application_name`` ``tickbase-heartbeat:<node id>``), never one from the
      shared pool, which request handling can exhaust and which refills slowly
      after a burst of terminated backends;
    * every attempt, connecting included, is bounded (at most one interval,
      between 1 and 5 s; the connection's ``statement_timeout`` is the same),
      and a failed attempt is retried after a short backoff (0.1 s doubling,
      at most half an interval) rather than at the next interval, so a
      terminated backend costs one interval and a fraction, well inside the
      three that make a node dead.

Failure cases
    A node that finds it has been removed all the same (its heartbeat matches
    no row: it was silent too long, or someone deleted the row) registers
    again at once and logs a warning. Tasks it was running that the leader
    rescued meanwhile are lost to it: its worker stops their handlers at its
    next lease renewal, or at once should it claim the task again itself, and
    a late result is refused by the completion's guard (running, same node,
    same attempt), so the rescued run is the one that counts. Tasks that were not rescued (the row alone was
    deleted) keep running and complete as usual.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import orjson
import psutil
import psycopg

from tickbase._version import __version__
from tickbase.db.dedicated import DedicatedConnection
from tickbase.db.pool import AsyncConn
from tickbase.db.sqlfile import load_queries
from tickbase.errors import DatabaseError
from tickbase.service import BACKOFF_FIRST, Backoff, Service

Q = load_queries("tickbase.cluster")
logger = logging.getLogger("tickbase.nodes")

HEARTBEAT_INTERVAL_DEFAULT = 5.0  # seconds
ATTEMPT_TIMEOUT_MIN = 1.0  # seconds
ATTEMPT_TIMEOUT_MAX = 5.0  # seconds
APPLICATION_NAME = "tickbase-heartbeat"

# DatabaseError: db.pool.connect() reports an unreachable server that way.
_BEAT_ERRORS = (psycopg.Error, DatabaseError, OSError, TimeoutError)


class NodeHeartbeat(Service):
    """Register this process, heartbeat until stopped, then deregister.

    ``url`` is the database's conninfo: the heartbeat opens its own
    connection (see the module docstring for why not the pool). ``on_beat``
    hooks run on that connection after each successful beat. ``reports`` maps
    a name to a callable whose value goes into the metrics under that name at
    each beat (``None``: left out); the mapping is read at each beat, so the
    layers above register reports while the node runs (the real-time pipeline
    adds ``realtime``). A report that raises is logged and left out.

    Example::

        beat = NodeHeartbeat(app.url, node_id, roles=["worker"], running=lambda: 3)
        await beat.start(); ...; await beat.stop()
    """

    def __init__(
        self,
        url: str,
        node_id: str,
        *,
        roles: Sequence[str],
        queues: Sequence[str] | None = None,
        interval: float = HEARTBEAT_INTERVAL_DEFAULT,
        running: Callable[[], int] = lambda: 0,
        processed: Callable[[], int] | None = None,
        on_beat: Sequence[Callable[[AsyncConn], Awaitable[object]]] = (),
        task_types: Mapping[str, Mapping[str, Any]] | None = None,
        reports: Mapping[str, Callable[[], object]] | None = None,
    ) -> None:
        super().__init__()
        self.reports: Mapping[str, Callable[[], object]] = {} if reports is None else reports
        self.node_id = node_id
        self.task_types = {name: dict(defaults) for name, defaults in (task_types or {}).items()}
        """The task types this node's worker runs, with their enqueue defaults (published)."""
        self.roles = list(roles)
        self.queues = list(queues) if queues else None
        self.interval = interval
        self.running = running
        self.processed = processed
        """Tasks this node's worker has finished since it started (reported when given)."""
        self.on_beat = list(on_beat)
        self.attempt_timeout = min(max(interval, ATTEMPT_TIMEOUT_MIN), ATTEMPT_TIMEOUT_MAX)
        """Seconds one attempt (connect, beat, each hook) may take before it is abandoned."""
        self.link = DedicatedConnection(
            url,
            application_name=f"{APPLICATION_NAME}:{node_id}",
            connect_timeout=self.attempt_timeout,
            # A beat stuck behind a lock (or a hook's slow query) is cut short
            # by the server too, so the connection is free for the next one.
            server_settings={"statement_timeout": f"{int(self.attempt_timeout * 1000)}"},
        )
        self.beats = 0
        """Heartbeats that reached the database."""
        self.failures = 0
        """Attempts that failed (each is retried after a short backoff)."""
        self.reregistrations = 0
        """Times this node found itself removed and registered again."""
        self._registered = False
        self._process = psutil.Process(os.getpid())
        self._process.cpu_percent(None)  # prime: the first reading is always 0

    name = "heartbeat"

    async def serve(self) -> None:
        """Heartbeat every ``interval`` seconds until stopped; deregister on the way out."""
        backoff = Backoff(maximum=max(self.interval / 2, BACKOFF_FIRST))
        self.mark_started()  # up: a first beat that fails is retried like any other
        try:
            while not self._stopping.is_set():
                try:
                    async with asyncio.timeout(self.attempt_timeout):
                        await self._beat()
                except _BEAT_ERRORS as exc:
                    await self.link.discard()
                    self.failures += 1
                    delay = backoff.next()
                    logger.warning("node heartbeat failed (%r); retrying in %.1fs", exc, delay)
                else:
                    backoff.reset()
                    delay = self.interval
                    await self._run_hooks()
                await self.sleep(delay)
        finally:
            with contextlib.suppress(*_BEAT_ERRORS):
                async with asyncio.timeout(self.attempt_timeout):
                    conn = await self.link.get()
                    await conn.execute(Q["node_deregister"], {"node_id": self.node_id})
            await self.link.close()

    async def _beat(self) -> None:
        conn = await self.link.get()
        if not self._registered:
            await self._register(conn)
            self._registered = True
        cursor = await conn.execute(
            Q["node_heartbeat"],
            {"node_id": self.node_id, "metrics": orjson.dumps(self.metrics()).decode()},
        )
        if await cursor.fetchone() is None:
            # Removed while alive: silent too long (the leader reaped it) or
            # the row was deleted. Once per removal, since the row is back.
            self.reregistrations += 1
            logger.warning(
                "node %s was removed from the cluster while alive; registering again "
                "(tasks the leader rescued meanwhile run again elsewhere)",
                self.node_id,
            )
            await self._register(conn)
        self.beats += 1

    async def _run_hooks(self) -> None:
        # A failing hook is not a failed beat: it is logged, and only a broken
        # connection is replaced.
        for hook in self.on_beat:
            try:
                async with asyncio.timeout(self.attempt_timeout):
                    await hook(await self.link.get())
            except _BEAT_ERRORS as exc:
                logger.warning("node heartbeat hook %s failed (%r)", _name(hook), exc)
                await self.link.discard()
            except Exception:
                logger.exception("node heartbeat hook %s failed", _name(hook))

    async def _register(self, conn: AsyncConn) -> None:
        await conn.execute(
            Q["node_register"],
            {
                "node_id": self.node_id,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "roles": self.roles,
                "queues": self.queues,
                "version": __version__,
                "interval": self.interval,
                "task_types": orjson.dumps(self.task_types).decode(),
            },
        )

    def metrics(self) -> dict[str, Any]:
        """What this node reports with each heartbeat."""
        with self._process.oneshot():
            memory = self._process.memory_info()
            reported: dict[str, Any] = {
                "running_tasks": self.running(),
                "cpu_percent": self._process.cpu_percent(None),
                "rss_bytes": memory.rss,
                "threads": self._process.num_threads(),
            }
        if self.processed is not None:
            reported["processed"] = self.processed()
        for name, report in list(self.reports.items()):
            try:
                value = report()
            except Exception:
                logger.exception("node heartbeat report %s failed", name)
                continue
            if value is not None:
                reported[name] = value
        return reported


async def known_task_types(conn: AsyncConn) -> dict[str, dict[str, Any]]:
    """Task types some live node's worker handles (with the enqueue defaults its
    handler declares, and ``handled: True``) or a stored schedule fires (with
    the schedule's queue, ``handled: False``)."""
    cursor = await conn.execute(Q["known_task_types"])
    return {
        task_type: {**defaults, "handled": handled}
        for task_type, defaults, handled in await cursor.fetchall()
    }


async def waiting_reason(conn: AsyncConn, task_type: str, queue: str) -> str | None:
    """Why a waiting task of ``task_type`` in ``queue`` cannot be claimed now, or
    None when some live worker can claim it (it only waits its turn)."""
    cursor = await conn.execute(Q["task_type_served"], {"task_type": task_type, "queue": queue})
    row = await cursor.fetchone()
    handled, served = (bool(row[0]), bool(row[1])) if row else (False, False)
    if not handled:
        return f"no live worker handles type {task_type}"
    if not served:
        return f"no live worker that handles type {task_type} serves queue {queue}"
    return None


async def list_nodes(conn: AsyncConn) -> list[dict[str, Any]]:
    """Every registered node with ``alive`` computed from its last heartbeat."""
    from psycopg.rows import dict_row

    cursor = conn.cursor(row_factory=dict_row)
    await cursor.execute(Q["node_list"])
    return list(await cursor.fetchall())


def _name(hook: Callable[..., object]) -> str:
    return str(getattr(hook, "__qualname__", repr(hook)))
