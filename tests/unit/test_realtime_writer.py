"""The real-time writer's queue: coalescing, bounds, drops, retries, and final bars
offered again until written (issue 17).

``write`` here is a plain coroutine that records its batches (and fails or
waits on command), so the writer's own rules are what is tested; the
database-backed path is in tests/integration/test_realtime_writer_db.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from tickbase.marketdata.realtime.writer import BarWriter, FinalBars


class Recorder:
    def __init__(self) -> None:
        self.batches: list[list[Any]] = []
        self.fail = False
        self.gate: asyncio.Event | None = None

    async def __call__(self, bars: Sequence[Any]) -> None:
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise ConnectionError("database away")
        self.batches.append(list(bars))


async def test_one_write_per_key_per_flush_the_newest_wins() -> None:
    write = Recorder()
    writer = BarWriter(write, capacity=10)
    for version in range(5):
        assert writer.offer(("ES", "1m", 0), f"v{version}")
    assert writer.offer(("ES", "1m", 60), "other")
    assert writer.depth == 2 and writer.coalesced == 4
    assert await writer.flush() == 2
    assert write.batches == [["v4", "other"]]
    assert await writer.flush() == 0 and writer.written == 2


async def test_a_full_queue_drops_counts_and_alerts_once_per_burst() -> None:
    drops: list[int] = []
    writer = BarWriter(Recorder(), capacity=2, on_drop=drops.append)
    assert writer.offer("a", 1) and writer.offer("b", 1)
    assert writer.offer("a", 2)  # a pending key is replaced, not refused
    assert not writer.offer("c", 1) and not writer.offer("d", 1)
    assert writer.dropped == 2 and drops == [1]  # one alert for the burst
    await writer.flush()
    assert writer.offer("c", 1)
    writer.offer("d", 1)
    assert not writer.offer("e", 1)
    assert drops == [1, 3]  # a new burst after it drained: alerted again


async def test_a_failed_write_keeps_its_bars_and_newer_offers_win() -> None:
    write = Recorder()
    writer = BarWriter(write, capacity=10)
    writer.offer("a", "a1")
    writer.offer("b", "b1")
    write.fail = True
    with pytest.raises(ConnectionError):
        await writer.flush()
    assert writer.depth == 2
    write.fail = False
    write.gate = asyncio.Event()
    flushing = asyncio.ensure_future(writer.flush())
    await asyncio.sleep(0)
    writer.offer("a", "a2")  # offered while the write is under way: next flush
    write.gate.set()
    assert await flushing == 2
    assert write.batches == [["a1", "b1"]]
    await writer.flush()
    assert write.batches[-1] == ["a2"]


async def test_offer_never_waits_for_a_stuck_write() -> None:
    write = Recorder()
    write.gate = asyncio.Event()  # the database is locked
    writer = BarWriter(write, capacity=3, flush_every=0.01)
    await writer.start()
    try:
        writer.offer("a", 1)
        await asyncio.sleep(0.05)  # the flush took "a" and hangs
        for key in "bcd":
            writer.offer(key, 1)  # returns at once, full or not
        assert not writer.offer("e", 1) and writer.dropped == 1
    finally:
        write.gate.set()
        await writer.stop()
    assert sorted(bar for batch in write.batches for bar in batch) == [1, 1, 1, 1]


async def test_final_bars_are_offered_again_until_the_very_bar_is_written() -> None:
    write = Recorder()
    finals = FinalBars(capacity=10)
    writer = BarWriter(write, capacity=1, on_written=finals.confirm)
    writer.offer("other", "x")  # the queue is full
    finals.add("ES-0", "final-0")
    assert not writer.offer("ES-0", "final-0") and writer.dropped == 1  # the loop's put
    # while the queue is full nothing is offered again (nor counted dropped again)
    assert finals.offer_to(writer) == 0 and writer.dropped == 1
    await writer.flush()
    assert len(finals) == 1
    assert finals.offer_to(writer) == 1  # offered again on the next cycle
    assert finals.offer_to(writer) == 0  # pending in the writer: not offered twice
    assert writer.coalesced == 0
    await writer.flush()
    assert len(finals) == 0 and write.batches[-1] == ["final-0"]


async def test_offering_again_is_bounded_per_cycle() -> None:
    finals = FinalBars()
    writer = BarWriter(Recorder(), capacity=100)
    for n in range(50):
        finals.add(n, f"bar-{n}")
    assert finals.offer_to(writer, limit=20) == 20 and writer.depth == 20
    assert finals.offer_to(writer, limit=20) == 20 and writer.depth == 40  # the next 20


def test_an_earlier_state_written_confirms_nothing() -> None:
    finals = FinalBars()
    final = "final"
    finals.add("k", final)
    finals.confirm([("k", "not-final-yet")])
    assert len(finals) == 1
    finals.confirm([("k", final)])
    assert len(finals) == 0


def test_final_bars_beyond_capacity_drop_the_oldest_and_count() -> None:
    finals = FinalBars(capacity=2)
    for key in "abc":
        finals.add(key, key)
    assert len(finals) == 2 and finals.dropped == 1
    finals.confirm([("a", "a")])  # gone already: nothing to confirm
    assert len(finals) == 2


def test_a_writer_needs_room() -> None:
    with pytest.raises(ValueError, match="capacity"):
        BarWriter(Recorder(), capacity=0)
