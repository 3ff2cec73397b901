"""Real-time pipeline helpers for tests: aggregations for real shard processes (imported
by name in the child) and small generated trade files."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.support.waiting import wait_until
from tickbase.marketdata.realtime.changes import ChangeLog
from tickbase.marketdata.realtime.pipeline import RealtimePipeline


def make_counter() -> Any:
    """Count trades and sum quantity per symbol: trades are ``(symbol, price, qty)``."""
    counts: dict[str, tuple[int, float]] = {}

    def aggregate(trades: Sequence[Any], log: ChangeLog) -> None:
        for symbol, _price, qty in trades:
            n, volume = counts.get(symbol, (0, 0.0))
            counts[symbol] = (n + 1, volume + qty)
            log.set(symbol, counts[symbol])

    return aggregate


def write_trades(
    path: Path,
    symbols: Sequence[str] = ("BTCUSDT", "ETHUSDT"),
    *,
    minutes: int = 3,
    per_minute: int = 30,
    start: datetime = datetime(2026, 1, 5, 9, 0, tzinfo=UTC),
    seed: int = 17,
) -> Path:
    """A small replay file (``time,price,qty,symbol``, ISO times): ``per_minute`` trades
    of each symbol in each of ``minutes`` minutes, a seeded random walk of prices."""
    rng = random.Random(seed)
    prices = {symbol: 100.0 * (n + 1) for n, symbol in enumerate(symbols)}
    lines = ["time,price,qty,symbol"]
    step = 60_000 // per_minute
    for k in range(minutes * per_minute):
        at = start + timedelta(milliseconds=k * step + 7)
        stamp = at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"
        for symbol in symbols:
            prices[symbol] = round(prices[symbol] * (1 + rng.uniform(-0.002, 0.002)), 2)
            qty = round(rng.uniform(0.01, 2.0), 3)
            lines.append(f"{stamp},{prices[symbol]!r},{qty!r},{symbol}")
    path.write_text("\n".join(lines) + "\n")
    return path


class GatedSource:
    """A trade source that starts once :attr:`go` is set (a test subscribes first, and the
    shard processes answer their first pulls before the first trade)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name: str = inner.name
        self.live: bool = inner.live
        self.go = asyncio.Event()

    async def prepare(self) -> None:
        await self.inner.prepare()

    def close(self) -> None:
        self.inner.close()

    async def __aiter__(self) -> AsyncIterator[Any]:
        await self.go.wait()
        async for event in self.inner:
            yield event


async def start_warm(pipeline: RealtimePipeline, source: GatedSource) -> None:
    """Start ``pipeline``, wait until every shard answered a few pulls, then let trades in."""
    await pipeline.start()

    async def answering() -> bool:
        return all(pipeline.loop.shard_stats[s.name].pulls >= 3 for s in pipeline.shards)

    await wait_until(answering, timeout=20)
    source.go.set()
