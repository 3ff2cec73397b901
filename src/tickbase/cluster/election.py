"""Leader election: one service keeps this node's claim on the leader lease.

The ticker and the housekeeper both work only while this node leads, and both
use this one service for it: it acquires the lease when it is free, renews it
every third of its time to live while held, tries again the moment the
holder's lease runs out or is given up (``tickbase_lease_released``), and gives
it up when it stops. A duty whose fenced write is refused calls :meth:`lost`:
this node then stands down at once and competes again.

Leadership is never trusted alone: every write a deposed leader must not make
carries the lease's token and is refused in SQL once another node holds it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import psycopg
from psycopg_pool import AsyncConnectionPool

from tickbase.cluster.lease import LEADER_LEASE, LEASE_TTL_DEFAULT, Lease
from tickbase.db.listener import Listener
from tickbase.db.pool import AsyncConn
from tickbase.errors import DatabaseError
from tickbase.service import Backoff, Service

logger = logging.getLogger("tickbase.cluster")

ChangeCallback = Callable[[bool], None]
"""Called with ``True`` when this node becomes the leader, ``False`` when it stops being it."""

_ERRORS = (psycopg.Error, DatabaseError, OSError)


class LeaderElection(Service):
    """Keeps this node a candidate for ``lease`` while it runs.

    Example::

        election = LeaderElection(pool, listener, lease=Lease(pool, holder=node_id))
        election.on_change(lambda leading: wake.set())
        await election.start(); ...; await election.stop()   # gives the lease up
    """

    name = "election"

    def __init__(
        self,
        pool: AsyncConnectionPool[AsyncConn],
        listener: Listener | None = None,
        *,
        lease: Lease | None = None,
        node_id: str | None = None,
        ttl: float = LEASE_TTL_DEFAULT,
    ) -> None:
        super().__init__()
        if lease is None:
            if node_id is None:
                raise ValueError("LeaderElection needs a lease or a node_id")
            lease = Lease(pool, holder=node_id, name=LEADER_LEASE, ttl=ttl)
        self.lease = lease
        self.listener = listener
        self._callbacks: list[ChangeCallback] = []
        self._leading = False
        self._woken = asyncio.Event()

    @property
    def leading(self) -> bool:
        """Whether this node may act as the leader right now (lease held, not expired)."""
        return self.lease.held

    @property
    def token(self) -> int | None:
        """The fencing token to pass to fenced statements (None: not leading)."""
        return self.lease.token if self.lease.held else None

    def on_change(self, callback: ChangeCallback) -> Callable[[], None]:
        """Call ``callback(leading)`` on every change of leadership; returns an unsubscribe."""
        self._callbacks.append(callback)
        return lambda: self._callbacks.remove(callback) if callback in self._callbacks else None

    def lost(self) -> None:
        """A fenced write was refused: someone else leads. Stand down and compete again."""
        self.lease.lost()
        self._changed()
        self._woken.set()

    def on_stop_requested(self) -> None:
        self._woken.set()

    async def serve(self) -> None:
        unsubscribe = (
            self.listener.subscribe("tickbase_lease_released", self._on_released)
            if self.listener is not None
            else None
        )
        if self.listener is not None:
            await self.listener.start()
        self.mark_started()
        backoff = Backoff(maximum=self.lease.renew_interval)
        try:
            while not self.stopping:
                self._woken.clear()
                try:
                    held = await self.lease.acquire()
                except _ERRORS as exc:
                    delay = backoff.next()
                    logger.warning("leader election failed (%s); retrying in %.1fs", exc, delay)
                else:
                    backoff.reset()
                    if held:
                        delay = self.lease.renew_interval
                    else:
                        # Try again the moment the holder's lease runs out.
                        delay = min(self.lease.others_expire_in + 0.05, self.lease.renew_interval)
                self._changed()
                await self.sleep(delay, self._woken)
        finally:
            if unsubscribe is not None:
                unsubscribe()
            if self.lease.token is not None:
                try:
                    await self.lease.release()
                except _ERRORS as exc:
                    logger.warning("could not give the leader lease up (%s): it expires", exc)
            self.lease.lost()
            self._changed()

    def _on_released(self, _payload: str) -> None:
        if not self.lease.held:
            self._woken.set()

    def _changed(self) -> None:
        leading = self.lease.held
        if leading == self._leading:
            return
        self._leading = leading
        if leading:
            logger.info(
                "%s is now the scheduler leader (token %s)", self.lease.holder, self.lease.token
            )
        else:
            logger.warning("%s is no longer the scheduler leader", self.lease.holder)
        for callback in list(self._callbacks):
            try:
                callback(leading)
            except Exception:
                logger.exception("a leadership callback failed")


__all__ = ["LeaderElection"]
