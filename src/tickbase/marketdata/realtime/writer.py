"""The persistence path: a bounded, coalescing writer that never blocks the loop.

Overview
    The pulling loop hands bars to :meth:`BarWriter.offer`, which never
    waits: the bar replaces any pending bar of the same key (one write per
    key per flush: the newest state of a bar that changed ten times is
    written once), or takes a free slot. Every :attr:`BarWriter.flush_every`
    seconds the writer takes everything pending and writes it in one call of
    ``write`` (the store's batch upsert), outside the loop's path: a slow or
    locked database delays only the writer.

Going beyond the reference design's accepted risk
    The reference accepts losing a symbol's last final bar when its put
    failed and no trade follows. Here :class:`FinalBars` keeps every final
    bar until the writer confirms it written, and the loop offers the
    unconfirmed ones again each cycle (at most :attr:`FinalBars.capacity`
    of them; the oldest beyond that are counted and dropped, as a full
    queue's are). Only the process's death can lose a final bar, and a
    restart backfills from the exchange what it lost.

Failure cases
    A full queue refuses the bar: :meth:`BarWriter.offer` returns ``False``,
    ``dropped`` counts it and ``on_drop`` is called once per burst (the
    alert). A failed write keeps its bars pending (newer ones offered
    meanwhile win) and is retried with :class:`~tickbase.service.Backoff`.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Iterable, Sequence
from typing import Any

from tickbase.cluster.lease import Fence
from tickbase.errors import InvalidMarketData, LeaseLost
from tickbase.marketdata.bars import BarLike
from tickbase.marketdata.store import KlineStore
from tickbase.service import Backoff, Service

logger = logging.getLogger("tickbase.realtime")

QUEUE_CAPACITY = 10_000
FLUSH_SECONDS = 0.25
FINAL_CAPACITY = 100_000
REOFFER_LIMIT = 1_000

Write = Callable[[Sequence[Any]], Awaitable[None]]


class BarWriter(Service):
    """Coalesce bars by key and write them in batches (see the module).

    Example::

        writer = BarWriter(store_bars, capacity=10_000)
        await writer.start()
        writer.offer(("ES", "1m", open_time), bar, final=True)   # never blocks
    """

    name = "realtime-writer"

    def __init__(
        self,
        write: Write,
        *,
        capacity: int = QUEUE_CAPACITY,
        flush_every: float = FLUSH_SECONDS,
        on_drop: Callable[[int], None] | None = None,
        on_written: Callable[[Iterable[tuple[Hashable, Any]]], None] | None = None,
        prepare: Callable[[Any], Any] | None = None,
    ) -> None:
        super().__init__()
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.write = write
        self.capacity = capacity
        self.flush_every = flush_every
        self.on_drop = on_drop
        self.on_written = on_written
        self.prepare = prepare
        """Makes what ``write`` takes of an offered bar, at flush time (in the writer's
        task, not the offerer's); ``None``: the bar as offered."""
        self._pending: dict[Hashable, Any] = {}
        self._in_flight: dict[Hashable, Any] = {}
        self._dropping = False
        self.offered = 0
        self.coalesced = 0
        """Offers that replaced a pending bar of the same key (writes saved)."""
        self.dropped = 0
        self.written = 0
        self.flushes = 0
        self.failures = 0
        self.last_flush_seconds = 0.0

    @property
    def depth(self) -> int:
        """Bars waiting to be written."""
        return len(self._pending)

    @property
    def full(self) -> bool:
        """No slot for a bar of a new key (an offer of one would be dropped)."""
        return len(self._pending) >= self.capacity

    def pending(self, key: Hashable) -> bool:
        """Whether a bar of ``key`` waits to be written or is being written."""
        return key in self._pending or key in self._in_flight

    def offer(self, key: Hashable, bar: Any) -> bool:
        """Queue ``bar`` as ``key``'s newest (never waits); ``False``: the queue is full."""
        self.offered += 1
        if key in self._pending:
            self.coalesced += 1
            self._pending[key] = bar
            return True
        if len(self._pending) >= self.capacity:
            self.dropped += 1
            if not self._dropping:
                self._dropping = True
                logger.error(
                    "real-time writer queue full (%d bars): dropping bars until it drains",
                    self.capacity,
                )
                if self.on_drop is not None:
                    self.on_drop(self.dropped)
            return False
        self._pending[key] = bar
        return True

    async def flush(self) -> int:
        """Write everything pending now, in one call; how many bars were written."""
        if not self._pending:
            return 0
        batch, self._pending = self._pending, {}
        self._in_flight = batch
        began = time.monotonic()
        try:
            bars = list(batch.values())
            await self.write(bars if self.prepare is None else [self.prepare(b) for b in bars])
        except Exception:
            # Keep them, unless a newer bar of the key was offered meanwhile.
            for key, bar in batch.items():
                self._pending.setdefault(key, bar)
            raise
        finally:
            self._in_flight = {}
        self.last_flush_seconds = time.monotonic() - began
        self.flushes += 1
        self.written += len(batch)
        if len(self._pending) < self.capacity:
            self._dropping = False
        if self.on_written is not None:
            self.on_written(batch.items())
        return len(batch)

    async def serve(self) -> None:
        self.mark_started()
        backoff = Backoff()
        while True:
            stopping = await self.sleep(self.flush_every)
            try:
                await self.flush()
                backoff.reset()
            except Exception as exc:  # the database away or locked: try again later
                self.failures += 1
                delay = backoff.next()
                logger.warning("real-time writer failed (%s); retrying in %.1f s", exc, delay)
                if stopping or await self.sleep(delay):
                    break
                continue
            if stopping:
                break


class KlineWrite:
    """``write`` for :class:`BarWriter` storing ``(symbol, interval, bar)`` items
    with the K-line store: one upsert statement per series of the batch.

    A series whose bars the store refuses is logged and skipped (the others are
    stored); a database that is away raises, and the writer retries. The writes
    are live: a bar already stored marked backfilled (fetched from the REST API
    after the stream missed trades) is not replaced by the live one.

    ``fence(symbol)`` (the pipeline's symbol ownership): each series is written
    only with a proof that this node still owns the symbol, checked by the
    database in the same transaction; a deposed owner's bars are refused,
    counted in ``fenced`` and dropped (the new owner writes them).
    """

    def __init__(
        self,
        store: KlineStore,
        source: str,
        *,
        fence: Callable[[str], Fence | None] | None = None,
    ) -> None:
        self.store = store
        self.source = source
        self.fence = fence
        self.fenced = 0
        """Bars refused because this node no longer owned their symbol."""
        self._fenced_said: set[str] = set()

    async def __call__(self, items: Sequence[Any]) -> None:
        by_series: dict[tuple[str, str], list[BarLike]] = {}
        for symbol, interval, bar in items:
            by_series.setdefault((symbol, interval), []).append(bar)
        for (symbol, interval), bars in by_series.items():
            bars.sort(key=lambda bar: bar.open_time)
            proof = None
            if self.fence is not None:
                proof = self.fence(symbol)
                if proof is None:
                    self._refused(symbol, len(bars), "not owned here")
                    continue
            try:
                await self.store.upsert(self.source, symbol, interval, bars, live=True, fence=proof)
            except LeaseLost:
                self._refused(symbol, len(bars), "its lease was taken over")
            except InvalidMarketData as exc:
                # A bar the store refuses never becomes storable: retrying it would
                # hold back every other series' bars forever. Said, and left out.
                logger.error(
                    "real-time bars of %s %s refused, not stored: %s", symbol, interval, exc
                )

    def _refused(self, symbol: str, n: int, why: str) -> None:
        self.fenced += n
        if symbol not in self._fenced_said:
            self._fenced_said.add(symbol)
            logger.warning(
                "real-time bars of %s not stored (%s): its new owner stores them", symbol, why
            )


def kline_writer(
    store: KlineStore, source: str, *, fence: Callable[[str], Fence | None] | None = None
) -> KlineWrite:
    """A :class:`KlineWrite` (kept as a function: what callers and tests build)."""
    return KlineWrite(store, source, fence=fence)


class FinalBars:
    """Final bars not yet confirmed written, to offer again until they are.

    Example::

        finals = FinalBars()
        finals.add(key, bar)              # a bar became final
        finals.offer_to(writer)           # each cycle: offer the unconfirmed
        finals.confirm(written_items)     # the writer's on_written
    """

    def __init__(self, capacity: int = FINAL_CAPACITY) -> None:
        self.capacity = capacity
        self._waiting: OrderedDict[Hashable, Any] = OrderedDict()
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._waiting)

    def add(self, key: Hashable, bar: Any) -> None:
        self._waiting[key] = bar
        self._waiting.move_to_end(key)
        while len(self._waiting) > self.capacity:
            self._waiting.popitem(last=False)
            self.dropped += 1

    def confirm(self, written: Iterable[tuple[Hashable, Any]]) -> int:
        """Forget the final bars that were written (the very bar: an earlier
        state of the key written meanwhile confirms nothing); how many."""
        confirmed = 0
        for key, bar in written:
            if self._waiting.get(key) is bar:
                del self._waiting[key]
                confirmed += 1
        return confirmed

    def offer_to(self, writer: BarWriter, limit: int = REOFFER_LIMIT) -> int:
        """Offer the unconfirmed final bars the writer does not hold (dropped when its
        queue was full) again, oldest first, at most ``limit`` and only while it has
        room: a cycle's cost stays bounded and a full queue is not counted again.
        How many the writer took."""
        taken = 0
        for key, bar in self._waiting.items():
            if taken >= limit or writer.full:
                break
            if writer.pending(key):
                continue
            writer.offer(key, bar)
            taken += 1
        return taken


__all__ = [
    "FLUSH_SECONDS",
    "QUEUE_CAPACITY",
    "BarWriter",
    "FinalBars",
    "KlineWrite",
    "kline_writer",
]
