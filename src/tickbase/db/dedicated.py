"""A long-lived connection of one's own, outside every pool, reopened when it breaks.

Overview
    Some parts of a process must keep talking to the database whatever the
    rest of the process does: the LISTEN connection (:mod:`tickbase.db.listener`)
    and the node heartbeat (:mod:`tickbase.cluster.nodes`). Borrowing from the
    shared pool would put them in the queue behind request handling: a pool
    exhausted by slow requests, or refilling after a burst of
    ``pg_terminate_backend``, made the heartbeat wait its whole pool timeout
    (30 s) and the leader declared a live node dead. So each holds a
    :class:`DedicatedConnection` instead.

Failure cases
    A broken connection (terminated backend, server restart, network error)
    is discarded by its user with :meth:`DedicatedConnection.discard`; the
    next :meth:`DedicatedConnection.get` opens a new one, each attempt bounded
    by ``connect_timeout`` so that an unreachable server costs seconds, not
    the TCP timeout. Between failed attempts the user sleeps
    :meth:`Backoff.next` (doubling from 0.1 s up to a maximum), reset after a
    success, so a database that is down is not hammered and one that is back
    is used at once.
"""

from __future__ import annotations

import contextlib
import logging

from tickbase.db.pool import AsyncConn, connect
from tickbase.service import Backoff

logger = logging.getLogger("tickbase.db")

CONNECT_TIMEOUT_DEFAULT = 5.0  # seconds


class DedicatedConnection:
    """One autocommit connection, opened on demand and again after each break.

    ``application_name`` names it in ``pg_stat_activity``.

    Example::

        link = DedicatedConnection(url, application_name="tickbase-heartbeat:node-1")
        try:
            conn = await link.get()
            await conn.execute("SELECT 1")
        except (psycopg.Error, DatabaseError, OSError):
            await link.discard()  # the next get() reconnects
        ...
        await link.close()
    """

    def __init__(
        self,
        url: str,
        *,
        application_name: str,
        connect_timeout: float = CONNECT_TIMEOUT_DEFAULT,
        server_settings: dict[str, str] | None = None,
    ) -> None:
        self.url = url
        self.application_name = application_name
        self.connect_timeout = connect_timeout
        self.server_settings = dict(server_settings or {})
        self.connects = 0
        """Connections opened so far (the first included)."""
        self._conn: AsyncConn | None = None

    @property
    def reconnects(self) -> int:
        """Connections opened after the first."""
        return max(self.connects - 1, 0)

    async def get(self) -> AsyncConn:
        """The open connection, connecting first when there is none (one attempt).

        Raises ``psycopg.Error``, ``OSError`` or ``TimeoutError`` when the attempt fails.
        """
        conn = self._conn
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        await self.discard()
        conn = await connect(
            self.url,
            application_name=self.application_name,
            connect_timeout=self.connect_timeout,
            server_settings=self.server_settings,
        )
        self._conn = conn
        self.connects += 1
        if self.connects > 1:
            logger.info("%s reconnected", self.application_name)
        return conn

    async def discard(self) -> None:
        """Close the connection (after an error): the next :meth:`get` opens another."""
        conn, self._conn = self._conn, None
        if conn is not None:
            # Closing a broken connection can itself fail; it is gone either way.
            with contextlib.suppress(Exception):
                await conn.close()

    async def close(self) -> None:
        """Close for good. Safe to call twice."""
        await self.discard()


__all__ = ["Backoff", "DedicatedConnection"]
