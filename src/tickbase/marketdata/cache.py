"""The market-data cache (``tickbase.market_cache``): write-through, a TTL per kind.

Values are written when they are collected; a read that finds nothing fresh
goes to its loader (the tables, usually) and writes the result back. An
expired value is kept: when every source is down, it is what a collector
serves, marked stale.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from psycopg_pool import AsyncConnectionPool

from tickbase.db.pool import AsyncConn
from tickbase.db.sqlfile import load_queries

Q = load_queries("tickbase.marketdata")

# Seconds a value stays fresh, by kind (the reference document's TTLs).
TTL_SECONDS = {
    "price": 10.0,
    "klines": 3600.0,
    "score": 4 * 3600.0,
    "macro": 24 * 3600.0,
}


@dataclass(frozen=True, slots=True)
class Cached:
    """A cached value with its freshness."""

    value: Any
    fresh: bool
    stale: bool
    updated_at: datetime


class MarketCache:
    """Get, put and read-through of cached market values.

    Example::

        cache = MarketCache(pool)
        await cache.put("price:BTCUSDT", 97_000.5, kind="price")
        hit = await cache.get("price:BTCUSDT")
    """

    def __init__(self, pool: AsyncConnectionPool[AsyncConn]) -> None:
        self.pool = pool

    async def put(self, key: str, value: Any, *, kind: str) -> None:
        """Store ``value`` under ``key``, fresh for the TTL of ``kind``."""
        if kind not in TTL_SECONDS:
            raise ValueError(f"unknown cache kind {kind!r}: use one of {sorted(TTL_SECONDS)}")
        async with self.pool.connection() as conn:
            await conn.execute(
                Q["cache_put"],
                {"key": key, "value": orjson.dumps(value).decode(), "ttl": TTL_SECONDS[kind]},
            )

    async def get(self, key: str) -> Cached | None:
        """The cached value (fresh or not), or ``None`` when there never was one."""
        async with self.pool.connection() as conn:
            row = await (await conn.execute(Q["cache_get"], {"key": key})).fetchone()
        if row is None:
            return None
        return Cached(row[0], bool(row[1]), bool(row[2]), row[3])

    async def get_or_load(
        self, key: str, loader: Callable[[], Awaitable[Any]], *, kind: str
    ) -> Any:
        """A fresh cached value, else ``loader()``'s (written back; ``None`` is not cached)."""
        hit = await self.get(key)
        if hit is not None and hit.fresh:
            return hit.value
        value = await loader()
        if value is not None:
            await self.put(key, value, kind=kind)
        return value

    async def mark_stale(self, key: str) -> Any:
        """Mark the last value stale (every source failed) and return it, or ``None``."""
        async with self.pool.connection() as conn:
            row = await (await conn.execute(Q["cache_mark_stale"], {"key": key})).fetchone()
        return row[0] if row else None
