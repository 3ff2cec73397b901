"""Named leases with fencing tokens: who leads, and proof that it still does.

Overview
    A lease is one row of ``tickbase.leases``: a holder, an expiry and a token.
    A node acquires a free or expired lease, then renews it well before expiry
    (every third of its time to live). Only the leader runs cluster-wide duties
    such as ticking the scheduler.

State model
    The token only grows: each change of holder increments it. A leader's writes
    that must not come from a deposed leader carry the token and are guarded in
    SQL by ``EXISTS (lease with this holder, this token, not expired)``, so they
    are refused once anyone else has taken over, whatever the deposed node
    believes.

Failure cases
    A killed leader stops renewing; its lease expires after ``ttl`` and another
    node takes it (token + 1). A paused leader (GC, SIGSTOP, a slow disk) that
    wakes after its lease expired finds its renewal refused, or its fenced writes
    refused, and steps down. Correctness of scheduling never rests on the lease
    alone: every fire also carries a unique key.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg_pool import AsyncConnectionPool

from tickbase.db.pool import AsyncConn
from tickbase.db.sqlfile import load_queries
from tickbase.errors import LeaseLost

Q = load_queries("tickbase.cluster")

LEADER_LEASE = "leader"
LEASE_TTL_DEFAULT = 15.0  # seconds


def leader_idle_ms(ttl: float) -> int:
    """How long (ms) a leader's transaction may sit idle before the server ends it:
    half the lease, so a paused leader never holds a successor up past its lease
    (its own statements follow each other within milliseconds)."""
    return max(int(ttl * 500), 100)


class Lease:
    """One node's view of a named lease.

    Example::

        lease = Lease(pool, holder=node_id)
        if await lease.acquire():
            ...  # lead; pass lease.token to fenced statements
    """

    def __init__(
        self,
        pool: AsyncConnectionPool[AsyncConn],
        *,
        holder: str,
        name: str = LEADER_LEASE,
        ttl: float = LEASE_TTL_DEFAULT,
    ) -> None:
        self.pool = pool
        self.holder = holder
        self.name = name
        self.ttl = ttl
        self.token: int | None = None
        self._valid_until = 0.0  # monotonic; conservative local view of expiry
        self.others_expire_in = 0.0
        """After a refused acquire: seconds until the holder's lease expires."""

    @property
    def held(self) -> bool:
        """Whether this node may believe it holds the lease right now."""
        return self.token is not None and time.monotonic() < self._valid_until

    @property
    def renew_interval(self) -> float:
        return self.ttl / 3

    async def acquire(self, *, now: datetime | None = None) -> bool:
        """Take or renew the lease; ``True`` when this node holds it afterwards.

        ``now``: the instant to act at, on the database's side (``None``: its
        clock). Tests pass a later one instead of sleeping past an expiry; the
        local view (``held``) stays on this process's monotonic clock."""
        started = time.monotonic()
        params = {"name": self.name, "holder": self.holder, "ttl": self.ttl, "now": now}
        async with self.pool.connection() as conn:
            cursor = await conn.execute(Q["lease_acquire"], params)
            row = await cursor.fetchone()
        if row is None:
            self.token = None
            async with self.pool.connection() as conn:
                cursor = await conn.execute(Q["lease_expires_in"], {"name": self.name, "now": now})
                expiry = await cursor.fetchone()
            self.others_expire_in = float(expiry[0]) if expiry else 0.0
            return False
        self.token = int(row[0])
        # Counted from before the round trip: never believe the lease lasts
        # longer than the database says it does.
        self._valid_until = started + self.ttl
        return True

    async def release(self) -> None:
        """Give the lease up at once (only if still ours)."""
        if self.token is None:
            return
        async with self.pool.connection() as conn:
            await conn.execute(
                Q["lease_release"], {"name": self.name, "holder": self.holder, "token": self.token}
            )
        self.token = None

    def lost(self) -> None:
        """Forget the lease (a fenced write was refused)."""
        self.token = None


@dataclass(frozen=True, slots=True)
class Fence:
    """What a fenced write proves it still holds: lease ``name`` as ``holder`` with ``token``."""

    name: str
    holder: str
    token: int
    ttl: float = LEASE_TTL_DEFAULT

    async def hold(self, conn: AsyncConn) -> None:
        """:func:`hold_lease` or :class:`~tickbase.errors.LeaseLost` (in a transaction)."""
        if not await hold_lease(
            conn, name=self.name, holder=self.holder, token=self.token, ttl=self.ttl
        ):
            raise LeaseLost(self.holder, self.token, self.name)


async def hold_lease(
    conn: AsyncConn, *, name: str, holder: str, token: int, ttl: float = LEASE_TTL_DEFAULT
) -> bool:
    """The first statement of a fenced transaction: whether ``holder`` still holds the
    lease ``name`` with ``token``, unexpired. The row stays share-locked until commit,
    so no one takes the lease over while the fenced work runs; ``False``: deposed, write
    nothing."""
    params = {
        "lease": name,
        "holder": holder,
        "token": token,
        "now": None,
        "idle_ms": leader_idle_ms(ttl),
    }
    return await (await conn.execute(Q["lease_hold"], params)).fetchone() is not None


class LeaseSet:
    """Many named leases of one holder, taken and renewed in one statement each round.

    Example::

        leases = LeaseSet(pool, holder=node_id, ttl=15.0)
        held = await leases.acquire(["realtime:BTCUSDT", "realtime:ETHUSDT"])
        leases.token("realtime:BTCUSDT")   # for fenced writes; None once it may have lapsed
    """

    def __init__(
        self, pool: AsyncConnectionPool[AsyncConn], *, holder: str, ttl: float = LEASE_TTL_DEFAULT
    ) -> None:
        self.pool = pool
        self.holder = holder
        self.ttl = ttl
        self._tokens: dict[str, tuple[int, float]] = {}
        """name → (token, valid until on this process's monotonic clock)."""

    def token(self, name: str) -> int | None:
        """Our token of ``name`` while we may believe we hold it, else ``None``."""
        held = self._tokens.get(name)
        if held is None or time.monotonic() >= held[1]:
            return None
        return held[0]

    @property
    def held(self) -> set[str]:
        """The names we may believe we hold right now."""
        now = time.monotonic()
        return {name for name, (_, until) in self._tokens.items() if now < until}

    async def acquire(self, names: Iterable[str]) -> set[str]:
        """Take or renew every lease of ``names`` that is free, expired or ours; which of
        them are held afterwards (the others are someone else's, live). Leases not
        named are left as they were."""
        wanted = sorted(set(names))
        started = time.monotonic()
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                Q["lease_acquire_many"], {"names": wanted, "holder": self.holder, "ttl": self.ttl}
            )
            rows = await cursor.fetchall()
        # Counted from before the round trip, as Lease.acquire does.
        got = {str(name): (int(token), started + self.ttl) for name, token in rows}
        for name in wanted:
            self._tokens.pop(name, None)
        self._tokens.update(got)
        return set(got)

    async def release(self, names: Iterable[str]) -> None:
        """Give up ``names`` at once (those still ours)."""
        gone = sorted(set(names))
        if not gone:
            return
        for name in gone:
            self._tokens.pop(name, None)
        async with self.pool.connection() as conn:
            await conn.execute(Q["lease_release_many"], {"names": gone, "holder": self.holder})

    async def live_holders(self, prefix: str) -> list[str]:
        """Holders of the live leases named ``prefix...`` (a group's members)."""
        async with self.pool.connection() as conn:
            cursor = await conn.execute(Q["lease_live_holders"], {"prefix": prefix})
            return [str(row[0]) for row in await cursor.fetchall()]


async def lease_holder(
    conn: AsyncConn, name: str = LEADER_LEASE, *, now: datetime | None = None
) -> dict[str, Any] | None:
    """Who holds the lease ``name`` (``live`` False when it has expired as of
    ``now``; ``None``: the database clock)."""
    cursor = await conn.execute(Q["lease_get"], {"name": name, "now": now})
    row = await cursor.fetchone()
    if row is None:
        return None
    keys = ("name", "holder", "token", "acquired_at", "expires_at", "live")
    return dict(zip(keys, row, strict=True))


__all__ = [
    "LEADER_LEASE",
    "Fence",
    "Lease",
    "LeaseSet",
    "hold_lease",
    "leader_idle_ms",
    "lease_holder",
]
