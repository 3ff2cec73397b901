"""Connections: resolving the server, the async pool, and JSON adaptation.

JSON columns are decoded with orjson: payloads and results cross this boundary
once per task, so the decoder is on the hot path. Payloads are encoded by the
queue block itself (it must refuse what JSON cannot hold), and sent as text.
"""

from __future__ import annotations

import asyncio
import math
import os
import select
from typing import Any

import orjson
import psycopg
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool

from tickbase.db.embedded import EmbeddedServer
from tickbase.db.urls import connection_failure
from tickbase.errors import ServerNotRunning
from tickbase.settings import Settings

AsyncConn = psycopg.AsyncConnection[Any]

# Every tickbase session computes in UTC: timestamps come back as UTC datetimes
# whatever the server's (or the role's) TimeZone, so arithmetic on them (a
# grace period, a lease) is on absolute time, never on a local wall clock
# that jumps at a DST change.
SESSION_SETTINGS: dict[str, str] = {"TimeZone": "UTC"}


def session_options(server_settings: dict[str, str] | None = None) -> str:
    """The libpq ``options`` of a tickbase connection: :data:`SESSION_SETTINGS`
    plus ``server_settings`` (``-c`` options at connect time: no round trip)."""
    settings = {**SESSION_SETTINGS, **(server_settings or {})}
    return " ".join(f"-c {key}={value}" for key, value in settings.items())


def resolve_database_url(settings: Settings, *, start: bool = True) -> tuple[str, bool]:
    """The URL to use and whether this call started the embedded server.

    ``DATABASE_URL`` wins; without it the embedded server of ``TICKBASE_HOME``
    is started (or reused). With ``start=False`` a server that is not running
    raises :class:`~tickbase.errors.ServerNotRunning` instead.
    """
    if settings.database_url:
        return settings.database_url, False
    server = EmbeddedServer(settings.home)
    if start:
        return server.ensure_running()
    url = server.running_url()
    if url is None:
        raise ServerNotRunning(server.home)
    return url, False


def configure_connection(conn: psycopg.BaseConnection[Any]) -> None:
    """Adapt one connection: JSON via orjson."""
    set_json_loads(orjson.loads, context=conn)


async def _configure(conn: AsyncConn) -> None:
    configure_connection(conn)


async def _check_alive(conn: AsyncConn) -> None:
    """Pool checkout check without a round trip.

    An idle pooled connection has nothing to read: a server that terminated
    its backend (restart, ``pg_terminate_backend``, a proxy timeout) has sent
    its goodbye and closed the socket, which makes the socket readable. Such a
    connection is refused here, so the pool hands out another instead of
    failing the caller's statement.
    """
    if conn.closed or conn.pgconn.status != psycopg.pq.ConnStatus.OK:
        raise psycopg.OperationalError("connection closed while idle in the pool")
    # poll(), not select(): select() refuses file descriptors above 1023, which
    # a gateway holding thousands of WebSockets reaches.
    poller = select.poll()
    poller.register(conn.pgconn.socket, select.POLLIN)
    if poller.poll(0):
        # Closed here so that the pool, which takes back a connection that fails
        # its check, sees it as broken and discards it.
        await conn.close()
        raise psycopg.OperationalError("connection received data while idle in the pool")


def create_pool(
    url: str,
    *,
    max_size: int = 10,
    min_size: int = 1,
    name: str = "tickbase",
    server_settings: dict[str, str] | None = None,
) -> AsyncConnectionPool[AsyncConn]:
    """An async pool, not yet opened (``await pool.open()``, or ``async with``).

    ``server_settings`` become session settings of every connection (``-c``
    options at connect time, so they cost no round trip).
    """
    kwargs: dict[str, Any] = {
        "autocommit": True,
        "application_name": f"{name}:{os.getpid()}",
        "options": session_options(server_settings),
    }
    return AsyncConnectionPool(
        url,
        min_size=min_size,
        max_size=max_size,
        open=False,
        configure=_configure,
        check=_check_alive,
        kwargs=kwargs,
        name=name,
    )


async def connect(
    url: str,
    *,
    autocommit: bool = True,
    application_name: str | None = None,
    connect_timeout: float | None = None,
    server_settings: dict[str, str] | None = None,
) -> AsyncConn:
    """One configured connection outside any pool (listener, heartbeat, migrations, CLI).

    ``application_name`` (default ``tickbase:pid``) lets an operator, or a
    test, tell it apart in ``pg_stat_activity``. ``connect_timeout``
    bounds the whole attempt, in seconds; ``server_settings`` are session
    settings, as for :func:`create_pool`.

    A server that cannot be reached raises :class:`~tickbase.errors.DatabaseError`
    of one line naming host and port (never the password). This is the first
    connection every CLI command and ``App.open`` makes, so it is the one place
    that turns libpq's multi-line report into that message.
    """
    kwargs: dict[str, Any] = {
        "autocommit": autocommit,
        "application_name": application_name or f"tickbase:{os.getpid()}",
        "options": session_options(server_settings),
    }
    try:
        if connect_timeout is None:
            conn = await psycopg.AsyncConnection.connect(url, **kwargs)
        else:
            kwargs["connect_timeout"] = max(2, math.ceil(connect_timeout))
            # libpq rounds its timeout to whole seconds, at least 2, and counts it
            # per address tried: the asyncio bound is the one the caller asked for.
            async with asyncio.timeout(connect_timeout):
                conn = await psycopg.AsyncConnection.connect(url, **kwargs)
    except psycopg.OperationalError as exc:
        raise connection_failure(url, exc) from None
    configure_connection(conn)
    return conn
