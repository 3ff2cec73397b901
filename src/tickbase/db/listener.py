"""One LISTEN connection per process, fanned out to in-memory subscribers.

Overview
    PostgreSQL delivers a NOTIFY to every connection that LISTENs on its
    channel. Rather than one listening connection per consumer, a process owns
    one :class:`Listener`; consumers subscribe to a channel with a callback.

Failure cases
    A NOTIFY sent while the connection is down is lost for good. So when the
    connection drops, the listener reconnects with backoff, LISTENs again on
    every channel, and then calls each subscriber's ``on_reconnect`` so it can
    re-poll whatever it may have missed. Consumers never rely on notifications
    alone: each also has a slow poll (``TICKBASE_POLL_INTERVAL``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import defaultdict
from collections.abc import Callable

import psycopg
from psycopg import sql

from tickbase.db.dedicated import DedicatedConnection
from tickbase.db.pool import AsyncConn
from tickbase.errors import DatabaseError
from tickbase.service import Backoff, Service

logger = logging.getLogger("tickbase.listener")

NotifyCallback = Callable[[str], None]
ReconnectCallback = Callable[[], None]
CHANNEL_REFRESH_SECONDS = 0.5


class Listener(Service):
    """Subscribe callbacks to PostgreSQL channels over one connection.

    Example::

        listener = Listener(url)
        listener.subscribe("tickbase_enqueued", on_notify, on_reconnect=wake)
        await listener.start()
        ...
        await listener.stop()
    """

    name = "listener"

    def __init__(self, url: str) -> None:
        super().__init__()
        self._link = DedicatedConnection(url, application_name=f"tickbase-listener:{os.getpid()}")
        self._callbacks: dict[str, list[NotifyCallback]] = defaultdict(list)
        self._reconnect_callbacks: list[ReconnectCallback] = []
        self._listening: set[str] = set()
        self.connected = asyncio.Event()
        self.reconnects = 0

    def subscribe(
        self,
        channel: str,
        callback: NotifyCallback,
        on_reconnect: ReconnectCallback | None = None,
    ) -> Callable[[], None]:
        """Call ``callback(payload)`` for each NOTIFY on ``channel``; returns an unsubscribe."""
        self._callbacks[channel].append(callback)
        if on_reconnect is not None:
            self._reconnect_callbacks.append(on_reconnect)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._callbacks[channel].remove(callback)
            if on_reconnect is not None:
                with contextlib.suppress(ValueError):
                    self._reconnect_callbacks.remove(on_reconnect)

        return unsubscribe

    def on_stop_requested(self) -> None:
        # It waits in notifies() or a reconnect delay: both end at once.
        if self._task is not None:
            self._task.cancel()

    async def stop(self) -> None:
        """Stop listening and close the connection. Safe to call twice."""
        await super().stop()
        await self._close()

    async def serve(self) -> None:
        """Listen until stopped; ``start()`` returns once the first LISTEN is in place."""
        backoff = Backoff()
        first = True
        while True:
            try:
                conn = await self._link.get()
                self._listening = set()
                await self._listen_new_channels(conn)
                self.connected.set()
                self.mark_started()
                backoff.reset()
                if not first:
                    self.reconnects += 1
                    logger.info("listener reconnected; subscribers re-poll")
                    for callback in list(self._reconnect_callbacks):
                        callback()
                first = False
                while True:
                    # The timeout only bounds how long a channel subscribed later
                    # waits for its LISTEN: the connection cannot run LISTEN while
                    # notifies() holds it. Notifications themselves arrive at once.
                    async for notify in conn.notifies(timeout=CHANNEL_REFRESH_SECONDS):
                        self._dispatch(notify.channel, notify.payload)
                    if conn.closed:
                        raise psycopg.OperationalError("listener connection closed")
                    await self._listen_new_channels(conn)
            except asyncio.CancelledError:
                raise
            # DatabaseError: connect() reports an unreachable server that way
            except (psycopg.Error, DatabaseError, OSError, TimeoutError) as exc:
                self.connected.clear()
                delay = backoff.next()
                logger.warning("listener connection lost (%s); reconnecting in %.1fs", exc, delay)
                await self._link.discard()
                await asyncio.sleep(delay)

    async def _listen_new_channels(self, conn: AsyncConn) -> None:
        for channel in [c for c in self._callbacks if c not in self._listening]:
            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
            self._listening.add(channel)

    def _dispatch(self, channel: str, payload: str) -> None:
        for callback in list(self._callbacks.get(channel, ())):
            try:
                callback(payload)
            except Exception:
                logger.exception("listener callback failed on %s", channel)

    async def _close(self) -> None:
        await self._link.close()
