"""The real-time K-line pipeline put together: source → shards → pulling loop → writer, readers.

Overview
    :class:`RealtimePipeline` is one service (start/stop like every other
    long-running part). It starts ``workers`` shard processes
    (:class:`~tickbase.marketdata.realtime.shard.ProcessShard` running the
    K-line aggregation), routes each symbol's trades to one shard (the
    shard with the fewest symbols when a symbol is first seen), runs the
    :class:`~tickbase.marketdata.realtime.loop.PullingLoop` whose state is a
    :class:`~tickbase.marketdata.realtime.series.KlineState`, hands every
    final bar to the :class:`~tickbase.marketdata.realtime.writer.BarWriter`
    in the loop's cycle (non-blocking; :class:`FinalBars` offers the
    unconfirmed ones again), and serves readers through a
    :class:`~tickbase.marketdata.realtime.reader.SerialReader`:
    ``pipeline.register(name, handler)`` is the public way in.

Sources
    Anything async-iterable yielding :class:`TradeBatch` (and, from a live
    stream, gap events for ``backfill``), with ``name`` (the ``source`` the
    bars are stored under) and ``live`` (its trade times are now: the
    shards are told the wall clock each period, so a quiet symbol's bar
    closes on time). A finite source (a replay) ends with every shard
    finishing its bars; :meth:`RealtimePipeline.wait_stored` returns once
    every final bar is in the database.

Gaps
    A live stream's gaps (missed aggregate ids, a reconnect) go to
    ``backfill.submit``; so does, at each symbol's first trades, the span
    since its last stored bar (``last_stored``): what a killed process
    lost is fetched from the exchange once final, so no final bar is missing.

Failure cases
    A shard that does not take a batch: a replay waits for it (back
    pressure: nothing is lost); a live source cannot wait, so the batch is
    counted in ``refused_trades`` and logged (the stream's gap backfill
    covers such holes only when the exchange's ids say so).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from tickbase.marketdata.realtime.aggregator import DEFAULT_LATENESS_MS
from tickbase.marketdata.realtime.circuit import CircuitState
from tickbase.marketdata.realtime.columns import NO_WATERMARK
from tickbase.marketdata.realtime.indicators import LiveIndicators
from tickbase.marketdata.realtime.kline import DEFAULT_INTERVALS, LiveKline, interval_ms
from tickbase.marketdata.realtime.kline_shard import FINISH, KLINE_SHARD, Clock
from tickbase.marketdata.realtime.loop import PERIOD_SECONDS, PULL_TIMEOUT_SECONDS, PullingLoop
from tickbase.marketdata.realtime.reader import Handler, SerialReader
from tickbase.marketdata.realtime.series import KlineState
from tickbase.marketdata.realtime.shard import ProcessShard
from tickbase.marketdata.realtime.trades import TradeBatch, TradeBatches
from tickbase.marketdata.realtime.writer import (
    FLUSH_SECONDS,
    QUEUE_CAPACITY,
    BarWriter,
    FinalBars,
    Write,
)
from tickbase.service import Service

__all__ = ["PipelineCounts", "RealtimePipeline", "TradeSource"]

logger = logging.getLogger("tickbase.realtime")

LAGS_KEPT = 1000
LIVE_FLUSH_SECONDS = 0.01
"""How often a live source's trades go to the shards, one message per shard."""
RESUME_HORIZON_MS = 24 * 3600 * 1000
"""How far back a restart backfills at most (a day of bars)."""


class Backfill(Protocol):
    """What fills a gap in a live stream's bars (``GapBackfill``)."""

    def submit(self, gap: Any) -> Any: ...

    async def aclose(self) -> None: ...


LastStored = Callable[[str, str], Awaitable[int | None]]
"""``(symbol, interval)`` → the open time (ms) of the newest bar stored, or ``None``."""

Alert = Callable[[str, str], None]
"""``(kind, message)``: something an operator must hear about (circuit, drops, overruns)."""


class TradeSource(Protocol):
    """What the pipeline reads trades from (a live stream or a replay)."""

    name: str
    live: bool

    def __aiter__(self) -> Any: ...

    async def prepare(self) -> None:
        """Do the slow start-up work (read a file) before the loop's clock starts."""

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class PipelineCounts:
    """What went through: ``realtime replay --json`` prints these."""

    trades: int
    """Trades the shards aggregated (accepted)."""
    bars: int
    """Final bars stored."""
    late: int
    """Accepted trades that arrived behind a newer one (they amended their bar)."""
    dropped: int
    """Trades later than the lateness window, dropped (per symbol in ``by_symbol``)."""
    refused_trades: int
    writer_dropped: int
    by_symbol: Mapping[str, Mapping[str, int]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "trades": self.trades,
            "bars": self.bars,
            "late": self.late,
            "dropped": self.dropped,
            "refusedTrades": self.refused_trades,
            "writerDropped": self.writer_dropped,
            "bySymbol": [{"symbol": s, **v} for s, v in self.by_symbol.items()],
        }


class RealtimePipeline(Service):
    """Trades in, K-lines out: to readers each cycle, final bars to the database.

    Example::

        pipeline = RealtimePipeline(ReplaySource(path, symbol="ES"), write=store_bars)
        pipeline.register("print", lambda snapshot: print(snapshot.cycle))
        await pipeline.start()
        await pipeline.wait_stored()
        await pipeline.stop()
    """

    name = "realtime-pipeline"

    def __init__(
        self,
        source: TradeSource,
        write: Write | None,
        *,
        intervals: Sequence[str] = DEFAULT_INTERVALS,
        workers: int = 2,
        lateness_ms: int = DEFAULT_LATENESS_MS,
        period: float = PERIOD_SECONDS,
        timeout: float = PULL_TIMEOUT_SECONDS,
        writer_capacity: int = QUEUE_CAPACITY,
        flush_every: float = FLUSH_SECONDS,
        symbols: Sequence[str] = (),
        backfill: Backfill | None = None,
        last_stored: LastStored | None = None,
        on_alert: Alert | None = None,
    ) -> None:
        super().__init__()
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        for interval in intervals:
            interval_ms(interval)  # refuses an interval without a fixed length
        self.source = source
        self._feeding: asyncio.Task[None] | None = None
        self._switching: asyncio.Task[None] | None = None
        self.intervals = tuple(intervals)
        self.lateness_ms = lateness_ms
        self.backfill = backfill
        self.last_stored = last_stored
        self._resumed: set[str] = set()
        self.on_alert = on_alert
        options = {"intervals": self.intervals, "lateness_ms": lateness_ms}
        self.shards = [
            ProcessShard(f"shard-{n}", KLINE_SHARD, options=options) for n in range(workers)
        ]
        self._route: dict[str, ProcessShard] = {}
        self._load = dict.fromkeys(range(workers), 0)
        for symbol in symbols:
            self._shard_for(symbol)
        self.finals = FinalBars()
        self.writer: BarWriter | None = None
        if write is not None:
            self.writer = BarWriter(
                write,
                capacity=writer_capacity,
                flush_every=flush_every,
                on_drop=self._writer_dropping,
                on_written=self._written,
                prepare=_to_item,
            )
        self.kline_state = KlineState(self.intervals, on_final=self._final)
        self.loop = PullingLoop(
            self.shards,
            period=period,
            timeout=timeout,
            on_circuit=self._circuit,
            state=self.kline_state,
            on_cycle=self._applied,
        )
        self.reader: SerialReader[Any] = SerialReader(self.loop.channel)
        self.indicators = LiveIndicators(self.kline_state)
        """The built-in reader: each series' indicators on every closed bar."""
        self.reader.register("indicators", self.indicators)
        self.trades_fed = 0
        self.refused_trades = 0
        self.bars_stored = 0
        self.source_done = asyncio.Event()
        self.source_failure: Exception | None = None
        """Why the source stopped giving trades, if it failed."""
        self._finished_at: dict[str, int] = {}
        self._overrun_seen = 0
        self._held: dict[str, list[Any]] = {}
        self._refusing: dict[str, bool] = {}
        self.lags: list[float] = []
        """Trade → bar lag samples (ms): when a symbol's aggregated trades reached the
        state, how old its newest trade was (a live source's only)."""
        self._progress = asyncio.Event()
        """Set after each cycle and each write (what ``wait_stored`` waits on)."""

    # ---- the public surface -----------------------------------------------------------

    @property
    def symbols(self) -> list[str]:
        """Every symbol routed to a shard (configured, or seen in the trades)."""
        return list(self._route)

    def register(self, name: str, handler: Handler[Any]) -> Callable[[], None]:
        """Call ``handler(snapshot)`` for each new snapshot (see :class:`SerialReader`);
        returns its removal. ``snapshot.values[(symbol, interval)]`` is a
        :class:`~tickbase.marketdata.realtime.series.SeriesBars`."""
        return self.reader.register(name, handler)

    def counts(self) -> PipelineCounts:
        stats = self.kline_state.stats
        return PipelineCounts(
            trades=sum(s.accepted for s in stats.values()),
            bars=self.bars_stored,
            late=sum(s.late for s in stats.values()),
            dropped=sum(s.dropped_late for s in stats.values()),
            refused_trades=self.refused_trades,
            writer_dropped=self.writer.dropped if self.writer else 0,
            by_symbol={
                s.symbol: {"trades": s.accepted, "late": s.late, "dropped": s.dropped_late}
                for s in stats.values()
            },
        )

    def figures(self) -> dict[str, Any]:
        """The pipeline's figures now (camelCase: the API, metrics and node heartbeat)."""
        loop = self.loop
        counts = self.counts()
        writer = self.writer
        return {
            "source": self.source.name,
            "live": self.source.live,
            "symbols": len(self._route),
            "intervals": list(self.intervals),
            "periodMs": loop.period * 1000,
            "cycles": loop.cycles,
            "overruns": loop.overruns,
            "loopMs": _percentiles(loop.durations, 1000.0),
            "tradeToBarLagMs": _percentiles(self.lags) if self.source.live else None,
            "trades": counts.trades,
            "late": counts.late,
            "droppedLate": counts.dropped,
            "refusedTrades": self.refused_trades,
            "barsStored": self.bars_stored,
            "finalsWaiting": len(self.finals),
            "shards": [
                {
                    "name": shard.name,
                    "pid": shard.pid,
                    "alive": shard.alive,
                    "symbols": sum(1 for s in self._route.values() if s is shard),
                    "circuit": str(loop.shard_stats[shard.name].circuit),
                    "pulls": loop.shard_stats[shard.name].pulls,
                    "timeouts": loop.shard_stats[shard.name].timeouts,
                    "errors": loop.shard_stats[shard.name].errors,
                    "skipped": loop.shard_stats[shard.name].skipped,
                    "lastPullMs": loop.shard_stats[shard.name].last_pull_seconds * 1000,
                    "refused": shard.refused,
                }
                for shard in self.shards
            ],
            "writer": None
            if writer is None
            else {
                "depth": writer.depth,
                "capacity": writer.capacity,
                "offered": writer.offered,
                "coalesced": writer.coalesced,
                "dropped": writer.dropped,
                "written": writer.written,
                "flushes": writer.flushes,
                "failures": writer.failures,
                "lastFlushMs": writer.last_flush_seconds * 1000,
            },
        }

    def stored_everything(self) -> bool:
        """A finished source's every final bar is written (or there is no writer)."""
        if not self.source_done.is_set():
            return False
        for shard in self.shards:
            if self.loop.shard_stats[shard.name].pulls < self._finished_at.get(shard.name, 0) + 2:
                return False  # no answer yet that covers the shard's FINISH
        if self.kline_state.forming_count():
            return False
        return self.writer is None or (not len(self.finals) and self.writer.depth == 0)

    async def wait_stored(self, poll: float = 0.05) -> None:
        """Wait until a finite source's every final bar is stored (see the module)."""
        while not self.stored_everything():
            if self.source_failure is not None:
                raise self.source_failure
            if self.stopping:
                raise RuntimeError("the pipeline stopped before every final bar was stored")
            self._progress.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._progress.wait(), poll)

    # ---- the service ------------------------------------------------------------------

    async def serve(self) -> None:
        await asyncio.gather(self.source.prepare(), *(shard.start() for shard in self.shards))
        # Stopped in this order: the loop hands its last final bars to the writer,
        # whose last flush then has them.
        parts: list[Service] = [self.loop, self.reader]
        if self.writer is not None:
            parts.append(self.writer)
        tasks: list[asyncio.Task[None]] = []
        try:
            for part in parts:
                await part.start()
            self._feeding = asyncio.create_task(self._feed(self.source), name="realtime-feed")
            if self.source.live:
                tasks.append(asyncio.create_task(self._tell_clock(), name="realtime-clock"))
            self.mark_started()
            await self.wait_stopping()
        finally:
            self.source.close()
            if self._switching is not None:
                tasks.append(self._switching)
            if self._feeding is not None:
                tasks.append(self._feeding)
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks)
            for part in parts:
                await part.stop()
            for shard in self.shards:
                await shard.stop()
            if self.backfill is not None:
                await self.backfill.aclose()

    def replace_source(self, source: TradeSource) -> None:
        """Stream from ``source`` instead, from now (the symbol ownership's answer to a
        change of the symbols this node owns). Bars of symbols no longer streamed
        close by the clock; those newly streamed resume from their last stored bar."""
        if not source.live or not self.source.live:
            raise ValueError("only a live source is replaced by another live source")
        previous = self._switching
        self._switching = asyncio.get_running_loop().create_task(
            self._switch(source, previous), name="realtime-switch"
        )

    async def _switch(self, source: TradeSource, previous: asyncio.Task[None] | None) -> None:
        # asyncio.wait, not await: an earlier task's failure is not ours, and our own
        # cancellation (the pipeline stopping) still ends us.
        if previous is not None:
            await asyncio.wait([previous])
        old, feeding = self.source, self._feeding
        self.source = source  # first: the old feed, ending, sees it was replaced
        old.close()
        if feeding is not None:
            await asyncio.wait([feeding])
        await source.prepare()
        self._resumed.clear()  # each symbol streamed now resumes from its last stored bar
        self._feeding = asyncio.create_task(self._feed(source), name="realtime-feed")

    async def _feed(self, source: TradeSource) -> None:
        try:
            async for event in source:
                if isinstance(event, TradeBatch):
                    if event.symbol not in self._resumed:
                        await self._resume(event)
                    await self._send(self._shard_for(event.symbol), event)
                elif self.backfill is not None:
                    self.backfill.submit(event)
        except Exception as exc:
            logger.error("real-time source %s failed (%s); no more trades", source.name, exc)
            self.source_failure = exc
            self._progress.set()
            raise
        if source is not self.source or self.stopping:
            return  # replaced or stopped, not ended: its bars close by the clock
        self._flush_held()  # a live source's last trades go before its end
        for shard in self.shards:
            await shard.put(FINISH)
            self._finished_at[shard.name] = self.loop.shard_stats[shard.name].pulls
        self.source_done.set()
        logger.info("real-time source %s ended; finishing its bars", source.name)

    async def _resume(self, batch: TradeBatch) -> None:
        """A symbol's first trades since the start: the bars between its last stored one
        and them were lost with the process before (or never seen): backfilled."""
        self._resumed.add(batch.symbol)
        if self.backfill is None or self.last_stored is None or not len(batch):
            return
        smallest = min(self.intervals, key=interval_ms)
        try:
            last_open = await self.last_stored(batch.symbol, smallest)
        except Exception as exc:  # the database away: the live bars go on regardless
            logger.warning("could not read %s's last stored bar (%s)", batch.symbol, exc)
            return
        first_ms = int(batch.time_ms.min())
        step = interval_ms(smallest)
        # Not "no whole bar between": the bar holding the first trade was cut in two by
        # the restart (the process before had its start, unwritten), so it is backfilled
        # as soon as it is not the last stored one.
        if last_open is None or first_ms // step * step <= last_open:
            return  # nothing stored yet, or the trades go on in the last stored bar
        since = max(last_open + step, first_ms - RESUME_HORIZON_MS)
        from tickbase.marketdata.realtime.binance_stream import TradeGap

        logger.info(
            "%s: bars from %d to %d ms were not aggregated here: backfilling them",
            batch.symbol,
            since,
            first_ms,
        )
        self.backfill.submit(TradeGap(batch.symbol, -1, -1, since, first_ms, "restart"))

    async def _send(self, shard: ProcessShard, batch: TradeBatch) -> None:
        if self.source.live:
            # Held for the next flush: one message per shard every LIVE_FLUSH_SECONDS,
            # not one per symbol's few trades (a pull would wait behind hundreds).
            self._held.setdefault(shard.name, []).append(batch)
            return
        await shard.put(batch)  # a replay waits: nothing is lost
        self.trades_fed += len(batch)

    def _flush_held(self, clock: Clock | None = None) -> None:
        held, self._held = self._held, {}
        for shard in self.shards:
            batches = held.get(shard.name, [])
            trades = sum(len(b) for b in batches)
            joined = TradeBatches.of(batches) if len(batches) > 1 else None
            message: list[Any] = [joined] if joined is not None else batches
            if clock is not None:
                message.append(clock)
            if not message:
                continue
            if shard.feed(message):
                self.trades_fed += trades
            else:  # a live stream cannot wait: counted, said once per streak
                if not self._refusing.get(shard.name):
                    logger.error("shard %s is not keeping up: live trades refused", shard.name)
                self._refusing[shard.name] = True
                self.refused_trades += trades
                continue
            self._refusing[shard.name] = False

    async def _tell_clock(self) -> None:
        """A live source's flushes, with the wall clock every period (bars close on time)."""
        next_clock = 0.0
        while True:
            now = time.monotonic()
            if now >= next_clock:
                next_clock = now + self.loop.period
                self._flush_held(Clock(int(time.time() * 1000)))
            else:
                self._flush_held()
            await asyncio.sleep(LIVE_FLUSH_SECONDS)

    def _shard_for(self, symbol: str) -> ProcessShard:
        shard = self._route.get(symbol)
        if shard is None:
            index = min(self._load, key=lambda n: self._load[n])
            self._load[index] += 1
            shard = self._route[symbol] = self.shards[index]
        return shard

    # ---- in the loop's cycle ----------------------------------------------------------

    def _applied(self) -> None:
        self._progress.set()
        watermarks = self.kline_state.restated
        if self.source.live and len(watermarks):
            now_ms = time.time() * 1000
            self.lags.extend((now_ms - watermarks[watermarks != NO_WATERMARK]).tolist())
            if len(self.lags) > LAGS_KEPT:
                del self.lags[: len(self.lags) - LAGS_KEPT]
        if self.writer is not None and len(self.finals):
            self.finals.offer_to(self.writer)
        if self.loop.overruns > self._overrun_seen:
            self._overrun_seen = self.loop.overruns
            if self.loop.overruns == 1 or self.loop.overruns % 100 == 0:
                self._alert(
                    "loop_overrun",
                    f"the pulling loop's cycle exceeded its {self.loop.period * 1000:.0f} ms"
                    f" period ({self.loop.overruns} times)",
                )

    def _final(self, bar: LiveKline) -> None:
        # In the loop's cycle: two dictionary writes; the writer makes the stored
        # form (to_item) when it flushes, in its own task.
        if self.writer is None:
            return
        key = bar.key
        self.finals.add(key, bar)
        self.writer.offer(key, bar)

    def _written(self, items: Any) -> None:
        self.bars_stored += self.finals.confirm(items)
        self._progress.set()

    def _writer_dropping(self, dropped: int) -> None:
        self._alert(
            "writer_drops",
            f"the real-time writer's queue is full: {dropped} bar(s) dropped so far "
            "(final bars are offered again once it drains)",
        )

    def _circuit(self, shard: str, state: CircuitState) -> None:
        if state is CircuitState.OPEN:
            self._alert("circuit_open", f"shard {shard} stopped answering: its circuit is open")
        else:
            self._alert("circuit_closed", f"shard {shard} answers again: its circuit is closed")

    def _alert(self, kind: str, message: str) -> None:
        if self.on_alert is not None:
            try:
                self.on_alert(kind, message)
            except Exception:
                logger.exception("the real-time alert callback failed (%s)", kind)


def _to_item(bar: LiveKline) -> tuple[str, str, Any]:
    """What ``write`` stores for a final bar: ``(symbol, interval, Kline)``."""
    return (bar.symbol, bar.interval, bar.to_kline())


def _percentiles(values: Sequence[float], scale: float = 1.0) -> dict[str, float] | None:
    """p50, p99 and max of ``values`` (seconds → ms for the loop's durations)."""
    if not values:
        return None
    ordered = sorted(values)
    last = len(ordered) - 1
    return {
        "p50": ordered[last // 2] * scale,
        "p99": ordered[min(last, round(last * 0.99))] * scale,
        "max": ordered[-1] * scale,
    }
