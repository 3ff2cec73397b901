"""Which node aggregates which symbol: one fenced lease per symbol across the cluster.

Overview
    Every node running the real-time pipeline holds a member lease
    (``realtime-member:<holder>``) and competes for one lease per symbol
    (``realtime:<symbol>``). Each round (a third of the lease time) it reads
    the live members, computes each symbol's preferred owner by rendezvous
    hashing (the member with the highest hash of ``symbol + member``: every
    node computes the same answer, and a member joining or leaving moves
    only its share of the symbols), takes or renews the leases of the
    symbols it prefers plus those it still holds, and gives up those another
    live member prefers. ``on_change(owned)`` tells the pipeline to stream
    exactly those symbols.

Failure cases
    A node that dies stops renewing: its leases expire after ``ttl`` and the
    preferred survivor takes them on its next round (within ``ttl`` plus a
    round), backfilling from its last stored bar what nobody aggregated
    meanwhile. A deposed owner (paused past its leases) still believes for
    a moment that it owns its symbols, but its writes carry its token
    (:meth:`SymbolOwnership.fence`) and the database refuses them.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Final

from psycopg_pool import AsyncConnectionPool

from tickbase.cluster.lease import Fence, LeaseSet
from tickbase.db.pool import AsyncConn
from tickbase.service import Service

__all__ = ["MEMBER_PREFIX", "SYMBOL_PREFIX", "SymbolOwnership", "default_holder", "preferred"]

logger = logging.getLogger("tickbase.realtime")

SYMBOL_PREFIX: Final = "realtime:"
MEMBER_PREFIX: Final = "realtime-member:"
OWNERSHIP_TTL: Final = 15.0


def default_holder() -> str:
    """A holder name unique to this process (host, pid and a random part)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def preferred(symbol: str, members: Sequence[str]) -> str | None:
    """The member that should own ``symbol`` (rendezvous hashing); ``None`` without any."""
    if not members:
        return None
    return max(members, key=lambda m: hashlib.blake2b(f"{symbol}\0{m}".encode()).digest())


class SymbolOwnership(Service):
    """This node's share of the symbols, by fenced leases (see the module).

    Example::

        ownership = SymbolOwnership(pool, symbols, on_change=pipeline.own)
        await ownership.start()
        ownership.fence("BTCUSDT")   # a Fence for the writer, or None when not ours
    """

    name = "realtime-ownership"

    def __init__(
        self,
        pool: AsyncConnectionPool[AsyncConn],
        symbols: Iterable[str],
        *,
        holder: str | None = None,
        ttl: float = OWNERSHIP_TTL,
        on_change: Callable[[frozenset[str]], object] | None = None,
    ) -> None:
        super().__init__()
        self.symbols = tuple(dict.fromkeys(symbols))
        self.holder = holder or default_holder()
        self.ttl = ttl
        self.on_change = on_change
        self.leases = LeaseSet(pool, holder=self.holder, ttl=ttl)
        self.owned: frozenset[str] = frozenset()
        self.members: list[str] = []
        self.rounds = 0
        self.handovers = 0
        """Symbols given up to another member or taken over from one."""

    @property
    def member_lease(self) -> str:
        return MEMBER_PREFIX + self.holder

    def fence(self, symbol: str) -> Fence | None:
        """The proof a write of ``symbol``'s bars carries; ``None``: not ours (now)."""
        name = SYMBOL_PREFIX + symbol
        token = self.leases.token(name)
        if token is None:
            return None
        return Fence(name, self.holder, token, self.ttl)

    async def rebalance(self) -> frozenset[str]:
        """One round (see the module); the symbols owned afterwards."""
        self.rounds += 1
        await self.leases.acquire([self.member_lease])
        members = await self.leases.live_holders(MEMBER_PREFIX)
        if self.holder not in members:
            members.append(self.holder)
        self.members = sorted(members)
        held = self._held()
        mine = {s for s in self.symbols if preferred(s, self.members) == self.holder}
        acquired = await self.leases.acquire(SYMBOL_PREFIX + s for s in mine | held)
        got = {n.removeprefix(SYMBOL_PREFIX) for n in acquired}
        others = {s for s in got if s not in mine}
        if others:
            # Another live member prefers these: it takes them on its next round.
            await self.leases.release(SYMBOL_PREFIX + s for s in others)
            got -= others
        owned = frozenset(got & set(self.symbols))
        self._changed(owned)
        return owned

    async def serve(self) -> None:
        self.mark_started()
        try:
            while not self.stopping:
                try:
                    await self.rebalance()
                except Exception as exc:  # the database away: keep what has not lapsed
                    logger.warning("real-time ownership round failed (%s); retrying", exc)
                    self._changed(frozenset(self._held()))
                if await self.sleep(self.ttl / 3):
                    break
        finally:
            try:
                await self.leases.release([*self.leases.held, self.member_lease])
            except Exception as exc:
                logger.warning("could not release the real-time leases (%s)", exc)

    def _held(self) -> set[str]:
        names = self.leases.held
        return {s for s in self.symbols if SYMBOL_PREFIX + s in names}

    def _changed(self, owned: frozenset[str]) -> None:
        if owned == self.owned:
            return
        gained, lost = owned - self.owned, self.owned - owned
        self.handovers += len(gained) + len(lost) if self.rounds > 1 else 0
        logger.info(
            "real-time ownership of %s: %d symbol(s) now%s%s",
            self.holder,
            len(owned),
            f"; took {', '.join(sorted(gained))}" if gained else "",
            f"; gave up {', '.join(sorted(lost))}" if lost else "",
        )
        self.owned = owned
        if self.on_change is not None:
            self.on_change(owned)
