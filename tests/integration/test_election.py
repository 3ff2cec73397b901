"""LeaderElection against the real database: one leader per lease, callbacks on
changes only, a prompt takeover through tickbase_lease_released, lost(), one life."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest

import tickbase
from tests.support.waiting import wait_until
from tickbase.cluster.election import LeaderElection
from tickbase.cluster.lease import Lease, lease_holder
from tickbase.service import ServiceState

NAME = "test-election"
LONG_TTL = 30.0  # seconds: renewals every 10 s; only a NOTIFY explains a faster takeover
PROMPT = 3.0  # seconds: a takeover "well before" the ttl


class Candidate:
    """One election on the test lease, with the leadership changes it reported."""

    def __init__(self, app: tickbase.App, holder: str, ttl: float = LONG_TTL) -> None:
        self.lease = Lease(app.pool, holder=holder, name=NAME, ttl=ttl)
        self.election = LeaderElection(app.pool, app.listener, lease=self.lease)
        self.changes: list[bool] = []
        self.election.on_change(self.changes.append)


async def holder(app: tickbase.App) -> dict[str, Any] | None:
    async with app.pool.connection() as conn:
        return await lease_holder(conn, NAME)


async def leads(candidate: Candidate) -> bool:
    return candidate.election.leading


async def test_two_candidates_exactly_one_leads_and_callbacks_fire_on_changes_only(
    app: tickbase.App,
) -> None:
    # A short ttl, so that the leader renews (and the other is refused) several
    # times while we watch: neither renewals nor refusals are changes.
    a, b = Candidate(app, "a", ttl=1.5), Candidate(app, "b", ttl=1.5)
    try:
        await asyncio.gather(a.election.start(), b.election.start())

        async def someone_leads() -> bool:
            return a.election.leading or b.election.leading

        await wait_until(someone_leads, timeout=5, message="a leader")
        leader, other = (a, b) if a.election.leading else (b, a)
        row = await holder(app)
        assert row is not None and row["holder"] == leader.lease.holder and row["live"]
        first_expiry = row["expires_at"]

        async def renewed_twice() -> bool:
            row = await holder(app)
            return row is not None and row["expires_at"] > first_expiry + timedelta(seconds=0.9)

        await wait_until(renewed_twice, timeout=5, message="two renewals")
        row = await holder(app)
        assert row is not None and row["holder"] == leader.lease.holder
        assert row["token"] == 1  # renewals keep the token: never taken over meanwhile
        assert leader.election.leading and not other.election.leading
        assert leader.election.token == 1 and other.election.token is None
        assert other.lease.others_expire_in > 0  # it tried, and was refused
        assert leader.changes == [True] and other.changes == []
    finally:
        # The other first: stopped after the leader, it could take the lease the
        # leader gives up on the way out.
        other_first = (b, a) if a.election.leading else (a, b)
        for candidate in other_first:
            await candidate.election.stop()
    assert leader.changes == [True, False]
    assert other.changes == []


async def test_stopping_the_leader_hands_over_promptly_through_the_notify(
    app: tickbase.App,
) -> None:
    a, b = Candidate(app, "a"), Candidate(app, "b")
    try:
        await a.election.start()
        await wait_until(lambda: leads(a), timeout=5, message="a leading")
        await b.election.start()
        # b was refused, and now sleeps until a's lease would run out (30 s)
        # or a renewal interval (10 s) has passed, whichever first.
        await wait_until(
            lambda: asyncio.sleep(0, b.lease.others_expire_in > LONG_TTL / 2),
            timeout=5,
            message="b refused",
        )
        assert not b.election.leading
        stopped_at = time.monotonic()
        await a.election.stop()
        assert a.election.state is ServiceState.STOPPED and not a.election.leading
        await wait_until(lambda: leads(b), timeout=PROMPT, message="b taking over")
        assert time.monotonic() - stopped_at < PROMPT < b.lease.renew_interval
        row = await holder(app)
        assert row is not None and row["holder"] == "b" and row["live"]
        assert row["token"] == 2 and b.election.token == 2  # a new holder: a new token
        assert a.changes == [True, False] and b.changes == [True]
    finally:
        await asyncio.gather(a.election.stop(), b.election.stop())
    row = await holder(app)
    assert row is not None and not row["live"]  # b gave it up too


async def test_lost_stands_down_at_once_and_competes_again(
    app: tickbase.App, sql_conn: psycopg.Connection[Any]
) -> None:
    a = Candidate(app, "a")
    usurper = Lease(app.pool, holder="usurper", name=NAME, ttl=LONG_TTL)
    try:
        await a.election.start()
        await wait_until(lambda: leads(a), timeout=5, message="a leading")
        # Another node takes the lease, as if a's had expired (a later instant,
        # instead of sleeping past the expiry). a does not know yet.
        [(db_now,)] = sql_conn.execute("SELECT clock_timestamp()").fetchall()
        assert isinstance(db_now, datetime)
        assert await usurper.acquire(now=db_now + timedelta(seconds=LONG_TTL + 1))
        assert usurper.token == 2
        assert a.election.leading  # its local belief, until a fenced write is refused
        a.election.lost()
        assert not a.election.leading and a.election.token is None
        assert a.changes == [True, False]  # at once, not at the next renewal

        # It competes again at once, and is refused: the usurper holds the lease.
        await wait_until(
            lambda: asyncio.sleep(0, a.lease.others_expire_in > LONG_TTL),
            timeout=5,
            message="a refused",
        )
        assert not a.election.leading and a.changes == [True, False]
        assert a.election.state is ServiceState.RUNNING

        # The usurper gives it up: a takes it back promptly (the NOTIFY).
        await usurper.release()
        await wait_until(lambda: leads(a), timeout=PROMPT, message="a leading again")
        assert a.election.token == 3
        assert a.changes == [True, False, True]
    finally:
        await a.election.stop()
    assert a.changes == [True, False, True, False]


async def test_a_stopped_election_never_leads_again(app: tickbase.App) -> None:
    a, b = Candidate(app, "a"), Candidate(app, "b")
    await a.election.start()
    await wait_until(lambda: leads(a), timeout=5, message="a leading")
    await a.election.stop()
    row = await holder(app)
    assert row is not None and row["holder"] == "a" and not row["live"]  # given up
    assert a.election.state is ServiceState.STOPPED and not a.election.leading
    with pytest.raises(RuntimeError, match="one life"):
        await a.election.start()
    try:
        # The lease is free, and released again below: the stopped election
        # hears nothing (it unsubscribed) and never takes it.
        await b.election.start()
        await wait_until(lambda: leads(b), timeout=5, message="b leading")
        await b.election.stop()
        c = Candidate(app, "c")
        await c.election.start()
        await wait_until(lambda: leads(c), timeout=PROMPT, message="c leading")
        await c.election.stop()
    finally:
        await b.election.stop()
    assert not a.election.leading and a.election.token is None
    assert a.changes == [True, False]
    row = await holder(app)
    assert row is not None and row["holder"] == "c" and row["token"] == 3
