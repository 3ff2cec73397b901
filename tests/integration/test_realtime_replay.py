"""The real-time pipeline end to end: ES trades through two shard processes, the
pulling loop, the serial reader and the writer into the K-line table (issue 17).

Each shard process owns one symbol (the ES trades, and the same trades as
"ES2"); the loop pulls their changes every cycle; a registered handler hands
each final bar to the writer (and keeps it for the test); the writer stores
them. The 1m bars stored equal ``es-1m.csv`` for both symbols, and every
final bar is stored once the replay ends.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import psycopg
import pytest

import tickbase
from tickbase.marketdata.bars import load_bars
from tickbase.marketdata.realtime import PullingLoop, SerialReader, Snapshot
from tickbase.marketdata.realtime.bench import sample_trades
from tickbase.marketdata.realtime.kline import LiveKline
from tickbase.marketdata.realtime.kline_shard import FINISH, KLINE_SHARD
from tickbase.marketdata.realtime.shard import ProcessShard
from tickbase.marketdata.realtime.writer import BarWriter, FinalBars, kline_writer
from tickbase.marketdata.store import KlineStore

pytestmark = pytest.mark.slow
BATCH = 25_000


async def test_es_trades_through_two_shards_store_the_es_1m_bars(
    app: tickbase.App, database_url: str
) -> None:
    es = sample_trades("ES")
    es2 = dataclasses.replace(es, symbol="ES2")
    shards = [ProcessShard("shard-0", KLINE_SHARD), ProcessShard("shard-1", KLINE_SHARD)]
    for shard in shards:
        await shard.start()
    finals = FinalBars()
    writer = BarWriter(
        kline_writer(KlineStore(app.pool), "replay"), flush_every=0.05, on_written=finals.confirm
    )
    loop = PullingLoop(shards, period=0.1, timeout=0.09)
    reader: SerialReader[Snapshot] = SerialReader(loop.channel)
    seen_final: set[tuple[str, str, int]] = set()

    def store_final_bars(snapshot: Snapshot) -> None:
        for key, bar in snapshot.values.items():
            if isinstance(bar, LiveKline) and bar.is_final and key not in seen_final:
                seen_final.add(key)
                item = (bar.symbol, bar.interval, bar.to_kline())
                finals.add(key, item)
                writer.offer(key, item)
        finals.offer_to(writer)

    reader.register("store-final-bars", store_final_bars)
    await writer.start()
    await reader.start()
    await loop.start()
    try:
        for start in range(0, len(es), BATCH):
            part = slice(start, start + BATCH)
            while not shards[0].feed(es.take(part)):
                await asyncio.sleep(0.01)
            while not shards[1].feed(es2.take(part)):
                await asyncio.sleep(0.01)
            await asyncio.sleep(0)
        for shard in shards:
            shard.feed(FINISH)

        async def all_final_stored() -> None:
            while True:
                finals.offer_to(writer)
                count = _stored(database_url)
                if count and not len(finals) and count == len(seen_final) and _done(shards, loop):
                    return
                await asyncio.sleep(0.1)

        await asyncio.wait_for(all_final_stored(), 60)
    finally:
        await loop.stop()
        await reader.stop()
        await writer.stop()
        for shard in shards:
            await shard.stop()

    bars = load_bars("es-1m")
    with psycopg.connect(database_url) as conn:
        for symbol in ("ES", "ES2"):
            rows: list[Any] = conn.execute(
                "SELECT open_time, open, high, low, close, volume FROM tickbase.klines"
                " WHERE symbol = %s AND interval = '1m' ORDER BY open_time",
                (symbol,),
            ).fetchall()
            assert rows == [(b.open_time, b.open, b.high, b.low, b.close, b.volume) for b in bars]
        intervals = dict(
            conn.execute(
                "SELECT interval, count(*) FROM tickbase.klines WHERE symbol = 'ES' GROUP BY 1"
            ).fetchall()
        )
    # 2,264 minutes make 461 five-minute and 39 hourly bars (the aggregator's unit
    # tests check their values against resampling); every final bar seen is stored.
    assert intervals == {"1m": 2264, "5m": 461, "1h": 39}
    assert len(seen_final) == 2 * sum(intervals.values()) == _stored(database_url)


def _stored(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM tickbase.klines").fetchone()
    return int(row[0]) if row else 0


def _done(shards: list[ProcessShard], loop: PullingLoop) -> bool:
    """Every shard answered after its FINISH: nothing still forming in the state."""
    forming = [v for v in loop.values.values() if isinstance(v, LiveKline) and not v.is_final]
    return not forming and all(loop.shard_stats[s.name].pulls > 0 for s in shards)
