"""A node of the cluster: its roles composed as services, started and stopped in order.

The roles are :class:`~tickbase.service.Service` values: the node heartbeat
(first up, last down, so the node leaves the cluster only once its roles have
finished), the worker, and for the scheduler role the leader election with
the two duties that work while it leads, the ticker and the housekeeper.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING

from tickbase.cluster.alerts import AlertNotifier, evaluate_alerts
from tickbase.cluster.election import LeaderElection
from tickbase.cluster.nodes import NodeHeartbeat
from tickbase.db.pool import AsyncConn
from tickbase.errors import AppNotOpen
from tickbase.service import Service, stop_all

if TYPE_CHECKING:
    from tickbase.app import App


async def run_node(
    app: App,
    *,
    worker: bool,
    scheduler: bool,
    queues: Sequence[str] | None,
    concurrency: int,
    stop: asyncio.Event | None,
    other_roles: Sequence[str],
) -> None:
    """Run ``app``'s roles until ``stop`` is set or one of them ends (see ``App.run``)."""
    if app.url is None:
        raise AppNotOpen()
    the_worker = app.worker(queues=queues, concurrency=concurrency) if worker else None
    roles = [
        *other_roles,
        *(["worker"] if worker else []),
        *(["scheduler"] if scheduler else []),
    ]
    # The heartbeat gets the URL, not the pool: it keeps a connection of
    # its own, so a pool starved by request handling cannot make the
    # leader declare this live node dead.
    services: list[Service] = [
        NodeHeartbeat(
            app.url,
            app.node_id,
            roles=roles,
            queues=queues,
            interval=app.settings.heartbeat_seconds,
            running=the_worker.running_count if the_worker else _nothing_running,
            processed=(lambda: the_worker.processed) if the_worker else None,
            # A missing leader cannot report its own absence: every node checks.
            on_beat=[_check_leader_missing],
            task_types=app.registry.published() if worker else None,
            reports=app.node_reports,
        ),
        *([the_worker] if the_worker else []),
    ]
    notifier = AlertNotifier(app.pool) if scheduler else None
    if notifier is not None:
        # The scheduler role makes a node a candidate leader: the ticker and
        # the housekeeper work while its election leads.
        election = LeaderElection(
            app.pool,
            app.listener,
            node_id=app.node_id,
            ttl=app.settings.leader_lease_seconds,
        )
        services += [election, app.ticker(election), app.housekeeper(election, notifier)]
    try:
        for service in services:
            await service.start()
        await _until_one_ends(services, stop or asyncio.Event())
    finally:
        # In reverse: the leader's duties, the election (the lease is given
        # up), the worker (drained or re-queued), and last the heartbeat: the
        # node leaves the cluster once its roles have finished.
        failure = await stop_all(services)
        if notifier is not None:
            await notifier.aclose()
    if failure is not None:
        raise failure


def _nothing_running() -> int:
    return 0


async def _check_leader_missing(conn: AsyncConn) -> None:
    await evaluate_alerts(conn, kinds={"leader_missing"})


async def _until_one_ends(services: Sequence[Service], stop: asyncio.Event) -> None:
    waiters = [asyncio.ensure_future(s.stopped.wait()) for s in services]
    waiters.append(asyncio.ensure_future(stop.wait()))
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
