"""This process as a node of the cluster: registration, heartbeats, reaping the dead.

Every tickbase process that runs a role registers a row in ``tickbase.nodes``
and heartbeats (default every 5 s) with its metrics: running tasks, CPU and
memory (psutil). A node silent for three of its intervals is dead: the
leader's housekeeping removes it and rescues the tasks it was running, without
waiting for their leases. A clean shutdown deregisters at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson
import psutil
import psycopg
from psycopg_pool import AsyncConnectionPool

from tickbase._version import __version__
from tickbase.db.pool import AsyncConn
from tickbase.db.sqlfile import load_queries

Q = load_queries("tickbase.cluster")
logger = logging.getLogger("tickbase.nodes")

HEARTBEAT_INTERVAL_DEFAULT = 5.0  # seconds


class NodeHeartbeat:
    """Register this process, heartbeat until stopped, then deregister.

    Example::

        beat = NodeHeartbeat(pool, node_id, roles=["worker"], running=lambda: 3)
        task = asyncio.create_task(beat.run()); ...; beat.stop(); await task
    """

    def __init__(
        self,
        pool: AsyncConnectionPool[AsyncConn],
        node_id: str,
        *,
        roles: Sequence[str],
        queues: Sequence[str] | None = None,
        interval: float = HEARTBEAT_INTERVAL_DEFAULT,
        running: Callable[[], int] = lambda: 0,
        on_beat: Sequence[Callable[[AsyncConn], Awaitable[object]]] = (),
    ) -> None:
        self.pool = pool
        self.node_id = node_id
        self.roles = list(roles)
        self.queues = list(queues) if queues else None
        self.interval = interval
        self.running = running
        self.on_beat = list(on_beat)
        self._stopping = asyncio.Event()
        self._process = psutil.Process(os.getpid())
        self._process.cpu_percent(None)  # prime: the first reading is always 0

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Heartbeat every ``interval`` seconds until :meth:`stop`; deregister on the way out."""
        registered = False
        try:
            while not self._stopping.is_set():
                try:
                    async with self.pool.connection() as conn:
                        if not registered:
                            await self._register(conn)
                            registered = True
                        cursor = await conn.execute(
                            Q["node_heartbeat"],
                            {
                                "node_id": self.node_id,
                                "metrics": orjson.dumps(self.metrics()).decode(),
                            },
                        )
                        if await cursor.fetchone() is None:
                            logger.warning(
                                "node %s was declared dead; registering again", self.node_id
                            )
                            await self._register(conn)
                        for hook in self.on_beat:
                            await hook(conn)
                except (psycopg.Error, OSError) as exc:
                    registered = False
                    logger.warning("node heartbeat failed (%s)", exc)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.interval):
                        await self._stopping.wait()
        finally:
            with contextlib.suppress(psycopg.Error, OSError):
                async with self.pool.connection() as conn:
                    await conn.execute(Q["node_deregister"], {"node_id": self.node_id})

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
            },
        )

    def metrics(self) -> dict[str, Any]:
        """What this node reports with each heartbeat."""
        with self._process.oneshot():
            memory = self._process.memory_info()
            return {
                "running_tasks": self.running(),
                "cpu_percent": self._process.cpu_percent(None),
                "rss_bytes": memory.rss,
                "threads": self._process.num_threads(),
            }


async def list_nodes(conn: AsyncConn) -> list[dict[str, Any]]:
    """Every registered node with ``alive`` computed from its last heartbeat."""
    from psycopg.rows import dict_row

    cursor = conn.cursor(row_factory=dict_row)
    await cursor.execute(Q["node_list"])
    return list(await cursor.fetchall())
