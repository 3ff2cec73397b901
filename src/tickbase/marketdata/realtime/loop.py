"""The pulling loop: every period, ask every shard for its changes; publish one snapshot.

Overview
    One task owns the global state of the real-time pipeline (the reference
    design's "Gateway"; named so here to keep it apart from the HTTP
    gateway). Every :attr:`PullingLoop.period` seconds it asks every shard
    for the changes since the version it last acknowledged, concurrently,
    each with its own :attr:`PullingLoop.timeout`; applies the answers in
    place to one state (a :class:`LoopState`: by default :class:`LatestValues`,
    each key's newest value; the K-line pipeline's keeps a pre-allocated slot
    per symbol, :class:`~tickbase.marketdata.realtime.series.KlineState`);
    then publishes one immutable snapshot of it on a latest-value channel.

The shard protocol
    ``await shard.pull(since)`` answers ``(version, changes)``: every key
    changed after version ``since``, with its newest value. A pull cut by the
    timeout acknowledges nothing, so the next one asks from the same
    version and nothing is lost: the shard's last good values stay in the
    state meanwhile (the reference's "use the last good snapshot").

Failure cases
    A missed timeout or an error is logged by the shard's name and counted;
    after ``threshold`` in a row the shard's circuit opens
    (:mod:`~tickbase.marketdata.realtime.circuit`): it is skipped and
    ``on_circuit(name, "open")`` is called (the alert); after the cool-down
    one half-open try closes it again (``on_circuit(name, "closed")``). A
    cycle longer than the period is counted (``overruns``) and the next one
    starts at once; missed ticks are not caught up (the state is the same).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

from tickbase.marketdata.realtime.channel import LatestValue
from tickbase.marketdata.realtime.circuit import CircuitBreaker, CircuitState
from tickbase.service import Service

logger = logging.getLogger("tickbase.realtime")

PERIOD_SECONDS = 0.1
PULL_TIMEOUT_SECONDS = 0.05
CIRCUIT_THRESHOLD = 5
CIRCUIT_COOLDOWN_SECONDS = 5.0
DURATIONS_KEPT = 1000


class LoopState(Protocol):
    """What the loop folds the shards' answers into, and publishes."""

    @property
    def values(self) -> Mapping[Hashable, Any]:
        """The state now (read in place: not to be kept across cycles)."""
        ...

    def apply(self, pulled: Sequence[Mapping[Hashable, Any]]) -> None:
        """Fold one cycle's answers (one mapping per shard that answered, maybe none) in."""
        ...

    def snapshot(self) -> Mapping[Hashable, Any]:
        """An immutable copy of the state now (what a snapshot publishes)."""
        ...


class LatestValues:
    """The default :class:`LoopState`: each key's newest value (the values are
    immutable themselves, so a snapshot is a read-only view of a shallow copy)."""

    def __init__(self) -> None:
        self.values: dict[Hashable, Any] = {}

    def apply(self, pulled: Sequence[Mapping[Hashable, Any]]) -> None:
        for changes in pulled:
            self.values.update(changes)

    def snapshot(self) -> Mapping[Hashable, Any]:
        return MappingProxyType(dict(self.values))


class Shard(Protocol):
    """What the loop asks a shard worker (a process, or an in-process stand-in)."""

    name: str

    async def pull(self, since: int) -> tuple[int, Mapping[Hashable, Any]]:
        """Every key changed after version ``since``, with its newest value."""
        ...


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One published state: its cycle number and a read-only view of every value."""

    cycle: int
    values: Mapping[Hashable, Any]
    at: float
    """When the cycle that made it started (monotonic seconds)."""


@dataclass
class ShardStats:
    """What the loop knows of one shard (for metrics and alerts)."""

    version: int = 0
    pulls: int = 0
    timeouts: int = 0
    errors: int = 0
    skipped: int = 0
    last_pull_seconds: float = 0.0
    breaker: CircuitBreaker = field(default_factory=CircuitBreaker)

    @property
    def circuit(self) -> CircuitState:
        return self.breaker.state


class PullingLoop(Service):
    """Pull every shard each period; apply in place; publish one snapshot.

    Example::

        loop = PullingLoop(shards, on_circuit=alert)
        reader = SerialReader(loop.channel)
        await loop.start(); await reader.start()
    """

    name = "realtime-loop"

    def __init__(
        self,
        shards: Sequence[Shard],
        *,
        period: float = PERIOD_SECONDS,
        timeout: float = PULL_TIMEOUT_SECONDS,
        threshold: int = CIRCUIT_THRESHOLD,
        cooldown: float = CIRCUIT_COOLDOWN_SECONDS,
        on_circuit: Callable[[str, CircuitState], None] | None = None,
        state: LoopState | None = None,
        on_cycle: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        names = [shard.name for shard in shards]
        if len(set(names)) != len(names):
            raise ValueError(f"shard names must be unique: {names}")
        if not 0 < timeout < period:
            raise ValueError(f"the pull timeout ({timeout}) must be positive and under the period")
        self.shards = list(shards)
        self.period = period
        self.timeout = timeout
        self.on_circuit = on_circuit
        self.global_state: LoopState = LatestValues() if state is None else state
        self.on_cycle = on_cycle
        """Called after each cycle's answers are applied, before its snapshot."""
        self.clock = clock
        self.channel: LatestValue[Snapshot] = LatestValue()
        self.shard_stats = {
            shard.name: ShardStats(breaker=CircuitBreaker(threshold, cooldown)) for shard in shards
        }
        self.cycles = 0
        self.overruns = 0
        self.durations: list[float] = []
        """The last :data:`DURATIONS_KEPT` cycle durations (seconds)."""

    @property
    def values(self) -> Mapping[Hashable, Any]:
        """The state now (its :attr:`LoopState.values`)."""
        return self.global_state.values

    async def serve(self) -> None:
        self.mark_started()
        next_tick = self.clock()
        while not self.stopping:
            await self.cycle()
            next_tick += self.period
            now = self.clock()
            if now > next_tick:
                self.overruns += 1
                next_tick = now  # start at once; missed ticks are not caught up
            elif await self.sleep(next_tick - now):
                break

    async def cycle(self) -> Snapshot:
        """One pull of every shard, applied and published (the loop's body)."""
        started = self.clock()
        due = []
        for shard in self.shards:
            stats = self.shard_stats[shard.name]
            if stats.breaker.allow(started):
                due.append(shard)
            else:
                stats.skipped += 1
        answers = await asyncio.gather(*(self._pull(shard) for shard in due))
        pulled = []
        for shard, answer in zip(due, answers, strict=True):
            if answer is not None:
                version, changes = answer
                pulled.append(changes)
                self.shard_stats[shard.name].version = version
        self.global_state.apply(pulled)
        if self.on_cycle is not None:
            self.on_cycle()
        self.cycles += 1
        snapshot = Snapshot(self.cycles, self.global_state.snapshot(), started)
        self.channel.put(snapshot)
        spent = self.clock() - started
        self.durations.append(spent)
        if len(self.durations) > DURATIONS_KEPT:
            del self.durations[: len(self.durations) - DURATIONS_KEPT]
        return snapshot

    async def _pull(self, shard: Shard) -> tuple[int, Mapping[Hashable, Any]] | None:
        stats = self.shard_stats[shard.name]
        began = self.clock()
        try:
            async with asyncio.timeout(self.timeout):
                answer = await shard.pull(stats.version)
        except TimeoutError:
            stats.timeouts += 1
            # Said at the first miss of a streak; the streak's end or its circuit
            # opening is said too, so a stuck shard is a few lines, not ten a second.
            logger.log(
                logging.WARNING if stats.breaker.failures == 0 else logging.DEBUG,
                "shard %s missed its %.0f ms pull timeout; its last good state is used",
                shard.name,
                self.timeout * 1000,
            )
            self._failed(shard.name, began)
            return None
        except Exception as exc:  # one shard's failure must not stop the loop
            stats.errors += 1
            logger.warning(
                "shard %s failed its pull (%s); its last good state is used", shard.name, exc
            )
            self._failed(shard.name, began)
            return None
        stats.pulls += 1
        stats.last_pull_seconds = self.clock() - began
        if stats.breaker.success():
            logger.info("shard %s answers again; its circuit is closed", shard.name)
            self._tell(shard.name, CircuitState.CLOSED)
        return answer

    def _failed(self, name: str, now: float) -> None:
        stats = self.shard_stats[name]
        if stats.breaker.failure(now):
            logger.error(
                "shard %s missed %d pulls in a row: its circuit is open (skipped for %.1f s)",
                name,
                stats.breaker.failures,
                stats.breaker.cooldown,
            )
            self._tell(name, CircuitState.OPEN)

    def _tell(self, name: str, state: CircuitState) -> None:
        if self.on_circuit is not None:
            try:
                self.on_circuit(name, state)
            except Exception:
                logger.exception("the circuit callback failed for shard %s", name)


__all__ = [
    "CIRCUIT_COOLDOWN_SECONDS",
    "CIRCUIT_THRESHOLD",
    "PERIOD_SECONDS",
    "PULL_TIMEOUT_SECONDS",
    "LatestValues",
    "LoopState",
    "PullingLoop",
    "Shard",
    "ShardStats",
    "Snapshot",
]
