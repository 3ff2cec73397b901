"""The real-time pipeline's pulling loop, its circuit breakers, channel and serial reader (issue 17).

Shards here are in-process stand-ins speaking the shard protocol over a real
:class:`ChangeLog`; a "stopped" shard is one whose pull never answers (as a
SIGSTOPped process), so the loop's own timeout is what is exercised. The
circuit is driven by the loop's cycles and the breaker's own clock values.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Hashable, Mapping
from typing import Any

import pytest

from tickbase.marketdata.realtime import (
    ChangeLog,
    CircuitBreaker,
    CircuitState,
    LatestValue,
    PullingLoop,
    SerialReader,
)


class LocalShard:
    """A shard in this process: a change log, and a switch that makes it hang."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.log = ChangeLog()
        self.stopped = False
        self.asked: list[int] = []

    async def pull(self, since: int) -> tuple[int, Mapping[Hashable, Any]]:
        self.asked.append(since)
        if self.stopped:
            await asyncio.Event().wait()  # never answers
        return self.log.since(since)


# ---- the change log ---------------------------------------------------------------


def test_the_change_log_answers_what_changed_after_a_version() -> None:
    log = ChangeLog()
    assert log.since(0) == (0, {})
    log.set("a", 1)
    log.set("b", 1)
    log.set("a", 2)  # two changes of one key between pulls: one entry, the newest
    version, changes = log.since(0)
    assert (version, dict(changes)) == (3, {"a": 2, "b": 1})
    assert dict(log.since(2)[1]) == {"a": 2}
    assert dict(log.since(3)[1]) == {}
    log.discard("b")
    assert dict(log.since(0)[1]) == {"a": 2} and len(log) == 1
    with pytest.raises(ValueError, match="in the future"):
        log.since(4)


def test_settled_keys_are_forgotten_once_acknowledged() -> None:
    log = ChangeLog()
    log.set("forming", 1)
    log.set("final", 2, settled=True)  # version 2
    log.set("late-final", 3, settled=True)  # version 3
    assert log.acknowledge(1) == 0  # the loop has not seen the final bars yet
    assert log.acknowledge(2) == 1 and dict(log.since(0)[1]) == {"forming": 1, "late-final": 3}
    assert log.acknowledge(3) == 1 and len(log) == 1  # a forming bar is kept


# ---- the circuit breaker ----------------------------------------------------------


def test_the_circuit_opens_after_k_failures_in_a_row_and_half_opens_after_the_cooldown() -> None:
    breaker = CircuitBreaker(threshold=3, cooldown=5.0)
    assert breaker.allow(0.0)
    assert not breaker.failure(0.0) and not breaker.failure(0.1)
    breaker.success()  # a success in between: the count starts again
    assert not breaker.failure(0.2) and not breaker.failure(0.3)
    assert breaker.failure(0.4)  # third in a row: opens (reported once)
    assert breaker.state is CircuitState.OPEN and breaker.opened == 1
    assert not breaker.allow(5.3)  # cooling down
    assert breaker.allow(5.4) and breaker.state is CircuitState.HALF_OPEN
    assert not breaker.failure(5.4)  # the half-open try failed: open again, not re-reported
    assert breaker.state is CircuitState.OPEN and breaker.opened == 1
    assert not breaker.allow(10.3) and breaker.allow(10.4)
    assert breaker.success() and breaker.state is CircuitState.CLOSED and breaker.failures == 0
    assert not breaker.success()  # closed already: nothing recovered


@pytest.mark.parametrize(("threshold", "cooldown"), [(0, 1.0), (1, 0.0), (1, float("nan"))])
def test_a_breaker_refuses_settings_it_could_not_keep(threshold: int, cooldown: float) -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(threshold=threshold, cooldown=cooldown)


# ---- the latest-value channel -------------------------------------------------------


async def test_readers_of_the_channel_see_only_the_newest_value() -> None:
    channel: LatestValue[str] = LatestValue()
    assert channel.latest() == (0, None)
    waiting = asyncio.ensure_future(channel.next(0))
    await asyncio.sleep(0)
    channel.put("first")
    assert await waiting == (1, "first")
    channel.put("second")
    channel.put("third")  # nobody took "second": superseded, never queued
    assert await channel.next(1) == (3, "third")
    assert channel.superseded == 1
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await channel.next(3)  # nothing newer


# ---- the pulling loop -------------------------------------------------------------


async def test_a_cycle_applies_every_shards_changes_and_publishes_one_snapshot() -> None:
    a, b = LocalShard("a"), LocalShard("b")
    loop = PullingLoop([a, b], period=0.1, timeout=0.05)
    a.log.set(("ES", "1m", 0), "bar-a0")
    b.log.set(("NQ", "1m", 0), "bar-b0")
    first = await loop.cycle()
    assert first.cycle == 1 and dict(first.values) == {
        ("ES", "1m", 0): "bar-a0",
        ("NQ", "1m", 0): "bar-b0",
    }
    a.log.set(("ES", "1m", 0), "bar-a0'")
    second = await loop.cycle()
    assert second.values[("ES", "1m", 0)] == "bar-a0'"
    assert first.values[("ES", "1m", 0)] == "bar-a0"  # a published snapshot never changes
    with pytest.raises(TypeError):
        second.values[("ES", "1m", 0)] = "tampered"  # type: ignore[index]
    assert a.asked == [0, 1] and b.asked == [0, 1]  # each asked from its acknowledged version
    assert loop.channel.latest()[1] is second


async def test_a_stopped_shard_keeps_its_last_good_state_then_its_circuit_opens_and_closes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    events: list[tuple[str, CircuitState]] = []
    fast, slow = LocalShard("fast"), LocalShard("slow")
    loop = PullingLoop(
        [fast, slow],
        period=0.1,
        timeout=0.02,
        threshold=3,
        cooldown=1.0,
        on_circuit=lambda name, state: events.append((name, state)),
        clock=lambda: now[0],
    )
    slow.log.set("slow-bar", 1)
    await loop.cycle()
    slow.stopped = True
    slow.log.set("slow-bar", 2)  # made while stopped: not seen until it answers
    with caplog.at_level(logging.WARNING, logger="tickbase.realtime"):
        for step in range(3):
            now[0] += 0.1
            fast.log.set("fast-bar", step)
            snapshot = await loop.cycle()
            assert snapshot.values["slow-bar"] == 1  # its last good state
            assert snapshot.values["fast-bar"] == step  # the others go on
    assert "shard slow missed its 20 ms pull timeout" in caplog.text
    assert events == [("slow", CircuitState.OPEN)]
    stats = loop.shard_stats["slow"]
    assert stats.timeouts == 3 and stats.circuit is CircuitState.OPEN

    now[0] += 0.5  # open: skipped, costing the loop nothing
    asked = len(slow.asked)
    await loop.cycle()
    assert len(slow.asked) == asked and stats.skipped == 1

    slow.stopped = False  # SIGCONT
    now[0] += 1.0  # past the cool-down: one half-open try, which succeeds
    snapshot = await loop.cycle()
    assert snapshot.values["slow-bar"] == 2  # what it made meanwhile, not lost
    assert events == [("slow", CircuitState.OPEN), ("slow", CircuitState.CLOSED)]
    assert stats.circuit is CircuitState.CLOSED and slow.asked[-1] == 1


async def test_a_shard_that_raises_is_a_failure_of_its_own() -> None:
    class Broken(LocalShard):
        async def pull(self, since: int) -> tuple[int, Mapping[Hashable, Any]]:
            raise ConnectionResetError("pipe closed")

    good, broken = LocalShard("good"), Broken("broken")
    good.log.set("k", "v")
    loop = PullingLoop([good, broken], period=0.1, timeout=0.05)
    snapshot = await loop.cycle()
    assert dict(snapshot.values) == {"k": "v"}
    assert loop.shard_stats["broken"].errors == 1 and loop.shard_stats["good"].pulls == 1


def test_the_loop_refuses_settings_that_cannot_work() -> None:
    with pytest.raises(ValueError, match="unique"):
        PullingLoop([LocalShard("x"), LocalShard("x")])
    with pytest.raises(ValueError, match="under the period"):
        PullingLoop([LocalShard("x")], period=0.1, timeout=0.1)


async def test_the_running_loop_publishes_every_period_and_the_reader_calls_handlers_in_turn() -> (
    None
):
    shard = LocalShard("s")
    loop = PullingLoop([shard], period=0.02, timeout=0.01)
    reader: SerialReader[Any] = SerialReader(loop.channel)
    order: list[str] = []
    running = 0

    async def first(snapshot: Any) -> None:
        nonlocal running
        running += 1
        assert running == 1, "handlers never run concurrently"
        order.append("first")
        await asyncio.sleep(0.001)
        running -= 1

    def second(snapshot: Any) -> None:
        assert running == 0
        order.append("second")

    def broken(snapshot: Any) -> None:
        raise RuntimeError("a handler's bug")

    reader.register("first", first)
    reader.register("broken", broken)
    reader.register("second", second)
    with pytest.raises(ValueError, match="registered already"):
        reader.register("first", second)
    await loop.start()
    await reader.start()
    try:
        for i in range(5):
            shard.log.set("k", i)
            await asyncio.sleep(0.03)
    finally:
        await reader.stop()
        await loop.stop()
    assert loop.cycles >= 5 and reader.snapshots_read >= 3
    assert order[:4] == ["first", "second", "first", "second"]
    assert reader.stats["broken"].failures == reader.stats["broken"].calls > 0
    assert reader.stats["first"].max_seconds >= 0.001
    assert loop.values["k"] == 4


def test_a_change_log_answers_in_the_order_changes_happened() -> None:
    """A bar forming (set early), then final (set after the bars that closed before
    it): the answer lists it last, so readers see bars close in order."""
    from tickbase.marketdata.realtime.changes import ChangeLog

    log = ChangeLog()
    log.set(("ES", "1m", 7), "forming-7")
    log.set(("ES", "1m", 5), "final-5", settled=True)
    log.set(("ES", "1m", 6), "final-6", settled=True)
    log.set(("ES", "1m", 7), "final-7", settled=True)
    version, changes = log.since(0)
    assert list(changes.values()) == ["final-5", "final-6", "final-7"]
    assert log.since(version - 1)[1] == {("ES", "1m", 7): "final-7"}
    assert log.since(version)[1] == {}
