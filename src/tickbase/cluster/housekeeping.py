"""The leader's housekeeping: reap dead nodes, rescue their tasks, and the rest.

Overview
    One node leads the cluster (the holder of the ``leader`` lease, elected
    among the nodes with the scheduler role by ``cluster.election``, which the
    ticker shares). Every
    ``interval`` seconds the leader runs one housekeeping pass:

    * remove nodes silent for three heartbeat intervals and rescue the tasks
      they were running, and rescue tasks whose lease expired (one statement,
      ``task_rescue``): re-queued with the attempt counted, or failed when out
      of attempts;
    * the extra steps the application adds (workflow reconcile, alert
      evaluation, pruning of rate-limit starts), in the same transaction;
    * after commit, the ``after`` steps (webhook deliveries: network calls
      never run inside a transaction).

Fencing
    A pass is one transaction that begins by share-locking the lease row with
    this node's token (``lease_hold``). A deposed leader (paused past its
    lease, partitioned away) finds no row: it writes nothing, forgets the
    lease and stands by. While a pass runs, no one can take the lease over, so
    a pass never overlaps a successor's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import psycopg
from psycopg_pool import AsyncConnectionPool

from tickbase.cluster.election import LeaderElection
from tickbase.cluster.lease import hold_lease
from tickbase.db.pool import AsyncConn
from tickbase.db.sqlfile import load_queries
from tickbase.queue.repository import TaskQueue
from tickbase.service import Service

Q = load_queries("tickbase.cluster")
QUEUE_Q = load_queries("tickbase.queue")
logger = logging.getLogger("tickbase.housekeeping")

RESCUE_BATCH = 1000

Step = Callable[[AsyncConn], Awaitable[object]]
"""A housekeeping step run inside the leader's fenced transaction."""
AfterStep = Callable[[], Awaitable[object]]
"""A step run after the pass has committed (no transaction held)."""


@dataclass
class PassReport:
    """What one housekeeping pass did."""

    dead_nodes: list[str] = field(default_factory=list)
    rescued: list[tuple[int, str]] = field(default_factory=list)


class Housekeeper(Service):
    """Runs housekeeping passes while this node leads (``election``, which the
    ticker shares; whoever composes them runs it).

    Example::

        keeper = Housekeeper(pool, election, node_id=node_id, steps=[("reconcile", reconcile)])
        await keeper.start(); ...; await keeper.stop()
    """

    name = "housekeeper"

    def __init__(
        self,
        pool: AsyncConnectionPool[AsyncConn],
        election: LeaderElection,
        *,
        node_id: str,
        interval: float = 5.0,
        steps: Sequence[tuple[str, Step]] = (),
        after: Sequence[tuple[str, AfterStep]] = (),
    ) -> None:
        super().__init__()
        self.pool = pool
        self.election = election
        self.lease = election.lease
        self.node_id = node_id
        self.interval = interval
        self.steps = list(steps)
        self.after = list(after)
        self.passes = 0
        self.rescued = 0
        self._queue = TaskQueue(pool)
        self._leading = asyncio.Event()

    async def serve(self) -> None:
        """A pass every ``interval`` seconds while leading, until stopped; the
        first at once when this node becomes the leader."""
        unwatch = self.election.on_change(self._on_leadership)
        self.mark_started()
        try:
            while not self.stopping:
                self._leading.clear()
                if self.election.leading:
                    try:
                        await self.run_once()
                    except (psycopg.Error, OSError) as exc:
                        logger.warning("housekeeping pass failed (%s); retrying", exc)
                await self.sleep(self.interval, self._leading)
        finally:
            unwatch()

    def _on_leadership(self, leading: bool) -> None:
        if leading:
            self._leading.set()

    async def run_once(self) -> PassReport | None:
        """One fenced pass; ``None`` when this node is not (or no longer) the leader."""
        token = self.lease.token
        if token is None:
            return None
        report = PassReport()
        async with self.pool.connection() as conn, conn.transaction():
            held = await hold_lease(
                conn, name=self.lease.name, holder=self.node_id, token=token, ttl=self.lease.ttl
            )
            if not held:
                logger.warning(
                    "%s is no longer the leader (token %s): housekeeping stands down",
                    self.node_id,
                    token,
                )
                self.election.lost()
                return None
            cursor = await conn.execute(Q["node_reap_dead"])
            report.dead_nodes = [row[0] for row in await cursor.fetchall()]
            while True:
                batch = await self._queue.rescue(
                    conn, dead_nodes=report.dead_nodes, node_id=self.node_id, limit=RESCUE_BATCH
                )
                report.rescued.extend(batch)
                if len(batch) < RESCUE_BATCH:
                    break
            await conn.execute(QUEUE_Q["rate_limit_starts_prune"])
            for name, step in self.steps:
                # A failing step must not undo the rescue: it runs in a savepoint.
                try:
                    async with conn.transaction():
                        await step(conn)
                except psycopg.Error:
                    raise
                except Exception:
                    logger.exception("housekeeping step %s failed", name)
        self.passes += 1
        self.rescued += len(report.rescued)
        if report.dead_nodes:
            logger.warning(
                "dead nodes removed: %s; %d of their tasks rescued",
                ", ".join(report.dead_nodes),
                len(report.rescued),
            )
        elif report.rescued:
            logger.warning("%d tasks whose lease expired were rescued", len(report.rescued))
        for name, after_step in self.after:
            try:
                await after_step()
            except Exception:
                logger.exception("housekeeping step %s failed", name)
        return report


__all__ = ["Housekeeper", "PassReport"]
