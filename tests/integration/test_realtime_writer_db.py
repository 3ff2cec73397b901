"""The real-time writer against the real K-line table locked by another session (issue 17).

While ``tickbase.klines`` is locked the writer's flush waits; offers never
do: the queue fills, further bars are dropped and counted, and the drop
alert is called. Once the lock is released every final bar is stored,
because the final bars not yet confirmed are offered again each cycle.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

import tickbase
from tickbase.marketdata.bars import Bar
from tickbase.marketdata.realtime.writer import BarWriter, FinalBars, kline_writer
from tickbase.marketdata.store import KlineStore

START = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)


def bar(minute: int, close: float = 100.0) -> Bar:
    return Bar(START + timedelta(minutes=minute), 100.0, max(100.0, close) + 1, 99.0, close, 10.0)


async def test_a_locked_table_fills_the_queue_and_every_final_bar_lands_after(
    app: tickbase.App, database_url: str
) -> None:
    drops: list[int] = []
    finals = FinalBars()
    writer = BarWriter(
        kline_writer(KlineStore(app.pool), "live"),
        capacity=5,
        flush_every=0.02,
        on_drop=drops.append,
        on_written=finals.confirm,
    )
    locker = psycopg.connect(database_url)
    locker.execute("LOCK TABLE tickbase.klines IN ACCESS EXCLUSIVE MODE")  # held until commit
    await writer.start()
    try:
        for minute in range(20):  # 20 final bars while the table is locked
            item = ("ESZ6", "1m", bar(minute, 100 + minute))
            finals.add(("ESZ6", "1m", minute), item)
            writer.offer(("ESZ6", "1m", minute), item)
            finals.offer_to(writer)  # the loop's cycle: the unconfirmed again
            await asyncio.sleep(0.005)
        assert writer.dropped > 0 and len(drops) == 1  # one alert for the burst
        assert writer.depth <= 5
        assert len(finals) == 20  # none confirmed: the table is locked
    finally:
        locker.commit()  # release the lock
        locker.close()

    async def cycle_until_stored() -> None:
        while len(finals):
            finals.offer_to(writer)
            await asyncio.sleep(0.02)

    await asyncio.wait_for(cycle_until_stored(), 10)
    await writer.stop()
    with psycopg.connect(database_url) as conn:
        rows: list[Any] = conn.execute(
            "SELECT open_time, close FROM tickbase.klines WHERE symbol = 'ESZ6' ORDER BY open_time"
        ).fetchall()
    assert [r[1] for r in rows] == [100 + m for m in range(20)]
    assert writer.failures == 0  # waiting for a lock is not a failure


async def test_a_series_the_store_refuses_is_skipped_and_the_others_stored(
    app: tickbase.App, database_url: str
) -> None:
    write = kline_writer(KlineStore(app.pool), "live")
    broken = Bar(START, 100.0, 99.0, 98.0, 100.0, 1.0)  # high below the open
    await write([("BAD", "1m", broken), ("GOOD", "1m", bar(0))])
    with psycopg.connect(database_url) as conn:
        stored = conn.execute("SELECT symbol FROM tickbase.klines").fetchall()
    assert stored == [("GOOD",)]


async def test_the_whole_pipeline_keeps_its_loop_and_readers_while_the_table_is_locked(
    app: tickbase.App, database_url: str, tmp_path: Any
) -> None:
    """A pipeline closing 1s bars of two symbols at 20x real time while another session
    holds the K-line table: the loop keeps its period and the readers keep reading, the
    writer's queue fills (drops counted, alerted once per burst), and once the lock goes every final
    bar is stored."""
    from tests.support.realtime import write_trades
    from tickbase.marketdata.realtime.pipeline import RealtimePipeline
    from tickbase.marketdata.realtime.replay_source import ReplaySource

    path = write_trades(tmp_path / "t.csv", minutes=2, per_minute=120)
    alerts: list[str] = []
    pipeline = RealtimePipeline(
        ReplaySource(path, speed=20.0, shift_to_now=True),
        kline_writer(KlineStore(app.pool), "live"),
        intervals=("1s",),
        workers=2,
        writer_capacity=5,
        flush_every=0.05,
        on_alert=lambda kind, message: alerts.append(kind),
    )
    read: list[int] = []
    pipeline.register("count", lambda snapshot: read.append(snapshot.cycle))
    locker = psycopg.connect(database_url)
    await pipeline.start()
    try:
        await asyncio.sleep(0.5)
        locker.execute("LOCK TABLE tickbase.klines IN ACCESS EXCLUSIVE MODE")
        cycles, reads = pipeline.loop.cycles, len(read)
        await asyncio.sleep(3.0)  # 60 s of trades: ~120 bars close meanwhile
        writer = pipeline.writer
        assert writer is not None
        # said once per burst (a flush that lands between two bursts starts a new one),
        # not once per bar
        assert 1 <= alerts.count("writer_drops") <= 3 < writer.dropped
        # the loop kept its 100 ms period and the readers kept up
        assert pipeline.loop.cycles - cycles >= 25
        assert len(read) - reads >= 25
        during = pipeline.loop.durations[-25:]
        assert max(during) < pipeline.loop.period, during
        assert len(pipeline.finals) > writer.depth  # held for later, not lost
    finally:
        locker.commit()
        locker.close()
    try:
        await pipeline.wait_stored()
        seen = pipeline.kline_state.finals_seen
    finally:
        await pipeline.stop()
    with psycopg.connect(database_url) as conn:
        stored = conn.execute("SELECT count(*) FROM tickbase.klines").fetchone()
    assert stored == (seen,) and seen == pipeline.counts().bars
    assert seen >= 200  # 2 symbols x ~120 seconds with trades
