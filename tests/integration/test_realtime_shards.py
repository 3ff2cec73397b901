"""Shard workers as real processes under the pulling loop (issue 17).

A shard SIGSTOPped: its pulls miss the timeout, its last good state is used,
the circuit opens after k cycles (alerted); after SIGCONT the half-open try
closes it and the trades it was sent meanwhile are all counted. Feeding a
stopped shard never blocks the loop: once its pipe and queue are full,
batches are refused and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator

import pytest

from tickbase.marketdata.realtime import CircuitState, PullingLoop
from tickbase.marketdata.realtime.shard import ProcessShard

pytestmark = pytest.mark.slow

COUNTER = "tests.support.realtime:make_counter"


@pytest.fixture
async def shards() -> AsyncIterator[list[ProcessShard]]:
    started = [ProcessShard("shard-a", COUNTER), ProcessShard("shard-b", COUNTER)]
    for shard in started:
        await shard.start()
    try:
        yield started
    finally:
        for shard in started:
            if shard.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(shard.pid, signal.SIGCONT)
            await shard.stop()


async def test_a_process_shard_answers_its_changes(shards: list[ProcessShard]) -> None:
    a, _ = shards
    assert a.feed([("ES", 5000.0, 1.0), ("ES", 5000.25, 2.0), ("NQ", 18000.0, 1.0)])
    version, changes = await asyncio.wait_for(a.pull(0), 10)
    assert dict(changes) == {"ES": (2, 3.0), "NQ": (1, 1.0)} and version == 3
    assert a.feed([("ES", 5001.0, 4.0)])
    version2, changes2 = await asyncio.wait_for(a.pull(version), 10)
    assert dict(changes2) == {"ES": (3, 7.0)} and version2 == 4


async def test_a_stopped_shard_opens_its_circuit_and_recovers_with_nothing_lost(
    shards: list[ProcessShard],
) -> None:
    a, b = shards
    for shard in shards:  # both up (spawn's imports take a moment) before the loop runs
        await asyncio.wait_for(shard.pull(0), 10)
    events: list[tuple[str, CircuitState]] = []
    loop = PullingLoop(
        shards,
        period=0.1,
        timeout=0.05,
        threshold=3,
        cooldown=0.5,
        on_circuit=lambda name, state: events.append((name, state)),
    )
    a.feed([("ES", 1.0, 1.0)])
    b.feed([("NQ", 1.0, 1.0)])
    for _ in range(20):
        snapshot = await loop.cycle()
        if {"ES", "NQ"} <= set(snapshot.values):
            break
        await asyncio.sleep(0.05)
    assert snapshot.values["ES"] == (1, 1.0)
    assert events == []

    assert a.pid is not None
    os.kill(a.pid, signal.SIGSTOP)
    a.feed([("ES", 1.0, 1.0)] * 10)  # sent while stopped: counted once it wakes
    for _ in range(3):
        b.feed([("NQ", 1.0, 1.0)])
        snapshot = await loop.cycle()
        assert snapshot.values["ES"] == (1, 1.0)  # the last good state
    assert events == [("shard-a", CircuitState.OPEN)]
    assert loop.shard_stats["shard-a"].timeouts == 3
    assert snapshot.values["NQ"][0] >= 2  # the other shard goes on

    os.kill(a.pid, signal.SIGCONT)
    await asyncio.sleep(0.6)  # past the cool-down
    for _ in range(20):
        snapshot = await loop.cycle()
        if snapshot.values["ES"] == (11, 11.0):
            break
        await asyncio.sleep(0.1)
    assert snapshot.values["ES"] == (11, 11.0)
    assert events == [("shard-a", CircuitState.OPEN), ("shard-a", CircuitState.CLOSED)]


async def test_feeding_a_stopped_shard_never_blocks(shards: list[ProcessShard]) -> None:
    a, _ = shards
    assert await asyncio.wait_for(a.pull(0), 10)  # up
    assert a.pid is not None
    os.kill(a.pid, signal.SIGSTOP)
    batch = [("ES", 1.0, 1.0)] * 500
    loop = asyncio.get_running_loop()
    began = loop.time()
    refused = sum(1 for _ in range(5000) if not a.feed(batch))
    assert loop.time() - began < 2.0  # the loop was never held
    assert refused > 0 and a.refused == refused
