"""The LISTEN connection: delivery, late subscriptions, reconnect with re-poll."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import psycopg.conninfo
import psycopg.sql

from tests.support.waiting import wait_until
from tickbase.db.listener import Listener


async def test_delivers_reconnects_and_asks_for_repoll(
    database_url: str, sql_conn: psycopg.Connection[Any]
) -> None:
    listener = Listener(database_url)
    received: list[str] = []
    repolls: list[int] = []
    listener.subscribe("chan_a", received.append, on_reconnect=lambda: repolls.append(1))
    await listener.start()
    try:
        sql_conn.execute("SELECT pg_notify('chan_a', 'one')")

        async def got(n: int) -> bool:
            return len(received) >= n

        await wait_until(lambda: got(1), timeout=5, message="first notification")

        late: list[str] = []
        listener.subscribe("chan_b", late.append)
        await asyncio.sleep(0.8)  # the channel refresh runs within CHANNEL_REFRESH_SECONDS
        sql_conn.execute("SELECT pg_notify('chan_b', 'late')")

        async def got_late() -> bool:
            return late == ["late"]

        await wait_until(got_late, timeout=5, message="late subscription")

        sql_conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )

        async def reconnected() -> bool:
            return bool(repolls) and listener.connected.is_set()

        await wait_until(reconnected, timeout=10, message="reconnect")
        sql_conn.execute("SELECT pg_notify('chan_a', 'two')")
        sql_conn.execute("SELECT pg_notify('chan_b', 'again')")
        await wait_until(lambda: got(2), timeout=5, message="notification after reconnect")
        assert received == ["one", "two"]
        await wait_until(
            lambda: asyncio.sleep(0, len(late) == 2), timeout=5, message="chan_b after reconnect"
        )
        assert listener.reconnects == 1
    finally:
        await listener.stop()
        await listener.stop()  # idempotent


async def test_every_tickbase_session_computes_in_utc(database_url: str, server_url: str) -> None:
    # A server (or role) whose TimeZone is local: arithmetic on timestamps it
    # returned would be on a wall clock that jumps at DST. Ours are UTC.
    from tickbase.db.pool import connect, create_pool

    with psycopg.connect(server_url, autocommit=True) as admin:
        dbname = psycopg.conninfo.conninfo_to_dict(database_url)["dbname"]
        admin.execute(
            psycopg.sql.SQL("ALTER DATABASE {} SET TimeZone = 'America/New_York'").format(
                psycopg.sql.Identifier(str(dbname))
            )
        )
    with psycopg.connect(database_url) as plain:
        assert plain.execute("SHOW TimeZone").fetchone() == ("America/New_York",)
    conn = await connect(database_url)
    async with conn:
        row = await (await conn.execute("SELECT current_setting('TimeZone'), now()")).fetchone()
        assert row is not None and row[0] == "UTC" and row[1].utcoffset().total_seconds() == 0
    pool = create_pool(database_url, min_size=1, max_size=1)
    async with pool, pool.connection() as pooled:
        row = await (await pooled.execute("SHOW TimeZone")).fetchone()
        assert row == ("UTC",)
