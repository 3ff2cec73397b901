"""The market-data cache: write-through with TTLs, read-through on a miss, stale values kept."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

import tickbase
from tickbase.marketdata.cache import MarketCache


async def test_put_get_expire_and_stale(
    app: tickbase.App, sql_conn: psycopg.Connection[Any]
) -> None:
    cache = MarketCache(app.pool)
    assert await cache.get("price:BTCUSDT") is None
    await cache.put("price:BTCUSDT", {"price": 97000.5}, kind="price")
    hit = await cache.get("price:BTCUSDT")
    assert hit is not None and hit.fresh and not hit.stale and hit.value == {"price": 97000.5}
    # the TTL passes (moved back in time rather than waiting 10 s)
    sql_conn.execute("UPDATE tickbase.market_cache SET expires_at = now() - interval '1 second'")
    expired = await cache.get("price:BTCUSDT")
    assert expired is not None and not expired.fresh and expired.value == {"price": 97000.5}
    # every source down: the last value is served, marked stale
    assert await cache.mark_stale("price:BTCUSDT") == {"price": 97000.5}
    stale = await cache.get("price:BTCUSDT")
    assert stale is not None and stale.stale
    assert await cache.mark_stale("price:NOPE") is None
    with pytest.raises(ValueError, match="unknown cache kind 'forever'"):
        await cache.put("x", 1, kind="forever")


async def test_read_through_loads_once_while_fresh(app: tickbase.App) -> None:
    cache = MarketCache(app.pool)
    loads = 0

    async def loader() -> list[float]:
        nonlocal loads
        loads += 1
        return [1.5, 2.5]

    assert await cache.get_or_load("klines:ES:1m", loader, kind="klines") == [1.5, 2.5]
    assert await cache.get_or_load("klines:ES:1m", loader, kind="klines") == [1.5, 2.5]
    assert loads == 1

    async def nothing() -> None:
        return None

    assert await cache.get_or_load("macro:none", nothing, kind="macro") is None
    assert await cache.get("macro:none") is None  # a miss is not cached
