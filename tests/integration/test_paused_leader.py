"""A leader paused inside its fenced transaction never holds up its successor.

The housekeeping pass share-locks the lease row; a leader frozen mid-pass
(SIGSTOP, a VM pause) would block every successor's lease_acquire for as long
as it stays frozen. The server ends such a session after half the lease of
idleness in the transaction, which releases the lock.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psycopg

import tickbase
from tests.conftest import fast_settings
from tickbase.cluster.election import LeaderElection
from tickbase.cluster.housekeeping import Housekeeper
from tickbase.cluster.lease import Lease, leader_idle_ms
from tickbase.db.sqlfile import load_queries


async def test_a_successor_takes_the_lease_from_a_leader_frozen_mid_pass(
    database_url: str, sql_conn: psycopg.Connection[Any]
) -> None:
    app = tickbase.App(settings=fast_settings(database_url))
    async with app:
        old = Lease(app.pool, holder="old", ttl=2.0)
        assert await old.acquire()
        inside = asyncio.Event()

        async def frozen(_conn: Any) -> None:
            inside.set()
            await asyncio.Event().wait()  # the client sends nothing more: idle in transaction

        keeper = Housekeeper(
            app.pool, LeaderElection(app.pool, lease=old), node_id="old", steps=[("freeze", frozen)]
        )
        passing = asyncio.create_task(keeper.run_once())
        try:
            await asyncio.wait_for(inside.wait(), 10)
            expires_at = sql_conn.execute(
                "SELECT expires_at FROM tickbase.leases WHERE name = 'leader'"
            ).fetchone()
            assert expires_at is not None
            new = Lease(app.pool, holder="new", ttl=30.0)
            started = time.monotonic()
            # Past the old lease; without the idle timeout this waits on the row
            # lock for as long as the old leader stays frozen.
            taken = await asyncio.wait_for(new.acquire(now=expires_at[0]), 10)
            waited = time.monotonic() - started
        finally:
            passing.cancel()
            await asyncio.gather(passing, return_exceptions=True)
        assert taken and new.token == 2
        assert waited < leader_idle_ms(2.0) / 1000 + 3


def test_every_leader_transaction_bounds_its_idleness(sql_conn: psycopg.Connection[Any]) -> None:
    # The tick's first statement sets the bound for its transaction only.
    tick_begin = load_queries("tickbase.scheduler")["tick_begin"]
    with sql_conn.transaction():
        sql_conn.execute(tick_begin.encode(), {"idle_ms": leader_idle_ms(15.0)})
        shown = sql_conn.execute("SHOW idle_in_transaction_session_timeout").fetchone()
        assert shown == ("7500ms",)
    assert sql_conn.execute("SHOW idle_in_transaction_session_timeout").fetchone() == ("0",)
    assert leader_idle_ms(0.01) == 100  # never zero: zero would mean no bound at all
