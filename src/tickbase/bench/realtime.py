"""``tickbase bench realtime``: the real-time K-line pipeline's figures (issue 17).

Sections
    Each section is one :class:`Section` in :data:`SECTIONS`: a camelCase key (its
    object in the ``--json`` output), a title, and an async ``run(ctx)`` returning
    :class:`Figure` rows, each printed with the peer, limit or target beside it, measured
    in the same run. Another section is one more function and one more entry there.

    1. ``aggregation``: trades/s of one shard's aggregation over the bundled 500,000 ES
       trades (:func:`~tickbase.marketdata.realtime.bench.aggregation_rate`): the
       vectorised path, the per-trade reference path, and a plain single-process Python
       loop building 1m OHLCV (the limit). Target ≥ 2,000,000 trades/s per worker.
    2. ``endToEnd``: the ES trades as two symbols (``ES`` and ``ES2``, all of them each)
       in a replay file, replayed at max speed through a
       :class:`~tickbase.marketdata.realtime.pipeline.RealtimePipeline` with 2 workers
       into a fresh database until every final bar is stored
       (:meth:`~RealtimePipeline.wait_stored`); trades/s from the first batch to the last
       final bar stored, the plain loop's rate over the same trades beside it. Writing
       the file, reading it and starting the shard processes are not timed. Target ≥
       500,000 trades/s.
    3. ``loop``: a live-like synthetic source (:class:`LiveSource`: every symbol's trades
       at the wall clock's time, at a steady total rate, spread over each period as a
       stream's frames are) with 1,000 symbols × 1m, 5m, 1h, 2 workers, into a fresh
       database; the pulling loop's cycle durations after a warm-up (p50, p99, max),
       overruns, and the snapshot's size. Target p99 ≤ 10 ms at the 100 ms period.
    4. ``memory``: the same live source with 1,000 symbols, then with 1: the shard
       processes' RSS (psutil) after the bars formed, the difference per extra symbol,
       and the parent's state (entries, and its pickled size as a measure of bytes).

Like every benchmark here, this prints figures and never fails on them.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import pickle
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import numpy as np
import psutil

from tickbase.bench.harness import BenchError, migrated_database, percentile
from tickbase.db.pool import create_pool, resolve_database_url
from tickbase.marketdata.realtime.bench import aggregation_rate, plain_loop_rate, sample_trades
from tickbase.marketdata.realtime.kline import DEFAULT_INTERVALS
from tickbase.marketdata.realtime.pipeline import RealtimePipeline
from tickbase.marketdata.realtime.replay_source import ReplaySource
from tickbase.marketdata.realtime.trades import TradeBatch
from tickbase.marketdata.realtime.writer import Write, kline_writer
from tickbase.marketdata.store import KlineStore
from tickbase.settings import load_settings

__all__ = [
    "SECTIONS",
    "BenchContext",
    "BenchSize",
    "Figure",
    "LiveSource",
    "Section",
    "run_realtime_bench",
    "run_realtime_command",
]

SUBJECT: Final = "realtime"
WORKERS: Final = 2
E2E_SYMBOLS: Final = ("ES", "ES2")
LIVE_SOURCE: Final = "bench-live"
LIVE_PACE_SECONDS: Final = 0.1
"""How often the live source's trades come for each symbol (one batch per symbol)."""
LIVE_YIELD_EVERY: Final = 50
"""Symbols' batches between two yields to the event loop: a stream's frames arrive
interleaved with everything else the loop does, not as one burst per period."""
MEMORY_SETTLE_SECONDS: Final = 3.0
STORE_TIMEOUT_SECONDS: Final = 600.0

TARGET_AGGREGATION: Final = 2_000_000.0
TARGET_END_TO_END: Final = 500_000.0
TARGET_LOOP_P99_MS: Final = 10.0
TARGET_INGEST: Final = 150_000.0
TARGET_PUSH_P99_MS: Final = 150.0
INGEST_FRAMES: Final = 300_000


@dataclass(frozen=True, slots=True)
class BenchSize:
    """How big a run is (the defaults are the issue's; tests pass small ones)."""

    trades: int = 500_000
    """ES trades used (the first ones of the bundled 500,000), per symbol."""
    symbols: int = 1_000
    """Symbols of the live source (loop and memory sections)."""
    seconds: float = 15.0
    """Measured time of the loop section, after its warm-up."""
    warmup: float = 3.0
    """Loop cycles of the first seconds are left out (processes, caches, first bars)."""
    rate: float = 100_000.0
    """Trades per second of the live source, over all symbols."""


@dataclass(frozen=True, slots=True)
class Figure:
    """One measured figure: its JSON key (camelCase), label, value, unit and what it is
    compared with (a target, or the key of a peer figure of the same section)."""

    key: str
    label: str
    value: float
    unit: str = ""
    beside: str = ""


@dataclass
class BenchContext:
    """What every section gets: the server, the size, a progress sink, the ES trades."""

    server_dsn: str
    size: BenchSize
    progress: Callable[[str], None]
    trades: TradeBatch = field(init=False)

    def __post_init__(self) -> None:
        self.trades = sample_trades().take(slice(0, self.size.trades))


@dataclass(frozen=True, slots=True)
class Section:
    """One part of the benchmark (see the module)."""

    key: str
    title: str
    run: Callable[[BenchContext], Awaitable[list[Figure]]]


# ---- 1. aggregation rate per worker -------------------------------------------------


async def aggregation_section(ctx: BenchContext) -> list[Figure]:
    """One shard's aggregation, in this process, beside the plain loop's limit."""
    rate = aggregation_rate(ctx.trades, out=None)
    return [
        Figure("trades", "trades (one symbol)", rate.trades),
        Figure(
            "vectorisedTradesPerS",
            f"vectorised (batches of {rate.batch_size:,})",
            rate.vectorised,
            "trades/s",
            f"target ≥ {TARGET_AGGREGATION:,.0f}",
        ),
        Figure("perTradeTradesPerS", "per-trade reference path", rate.per_trade, "trades/s"),
        Figure(
            "plainLoopTradesPerS",
            "plain Python loop (1m OHLCV only)",
            rate.plain_loop,
            "trades/s",
            "the single-process limit",
        ),
    ]


# ---- 2. end to end: replay → 2 workers → stored final bars ---------------------------


def write_replay_file(path: Path, trades: TradeBatch, symbols: Sequence[str]) -> Path:
    """``trades`` once per symbol in one replay file (``time,price,qty,symbol``), rows
    interleaved by time, as the exchange would send them."""
    stamps = np.datetime_as_string(trades.time_ms.astype("datetime64[ms]"), unit="ms")
    rows = zip(stamps.tolist(), trades.price.tolist(), trades.qty.tolist(), strict=True)
    lines = ["time,price,qty,symbol"]
    for stamp, price, qty in rows:
        lines.extend(f"{stamp}Z,{price!r},{qty!r},{symbol}" for symbol in symbols)
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode(), compresslevel=1))
    return path


class _Timed:
    """A trade source that notes when its first batch came (the end-to-end clock's start)."""

    def __init__(self, inner: ReplaySource) -> None:
        self.inner = inner
        self.name = inner.name
        self.live = inner.live
        self.first_batch: float | None = None

    async def __aiter__(self) -> AsyncIterator[TradeBatch]:
        async for batch in self.inner:
            if self.first_batch is None:
                self.first_batch = time.perf_counter()
            yield batch

    async def prepare(self) -> None:
        await self.inner.prepare()  # the file is read before the clock starts

    def close(self) -> None:
        self.inner.close()


async def end_to_end_section(ctx: BenchContext) -> list[Figure]:
    """The ES trades as two symbols through the whole pipeline into a fresh database."""
    symbols = E2E_SYMBOLS
    with tempfile.TemporaryDirectory(prefix="tickbase-bench-realtime-") as workdir:
        path = await asyncio.to_thread(
            write_replay_file, Path(workdir) / "trades.csv.gz", ctx.trades, symbols
        )
        source = _Timed(ReplaySource(path))
        async with _database(ctx, "e2e") as write:
            pipeline = RealtimePipeline(source, write, workers=WORKERS, symbols=symbols)
            await pipeline.start()
            try:
                async with asyncio.timeout(STORE_TIMEOUT_SECONDS):
                    await pipeline.wait_stored()
                stored = time.perf_counter()
                counts = pipeline.counts()
            finally:
                await pipeline.stop()
    if source.first_batch is None or counts.trades != len(ctx.trades) * len(symbols):
        raise BenchError(f"end to end: {counts.trades} trades aggregated, not all of them")
    seconds = stored - source.first_batch
    both = TradeBatch(
        "ALL",
        np.concatenate([ctx.trades.time_ms] * len(symbols)),
        np.concatenate([ctx.trades.price] * len(symbols)),
        np.concatenate([ctx.trades.qty] * len(symbols)),
    )
    return [
        Figure("trades", f"trades ({len(symbols)} symbols, {WORKERS} workers)", counts.trades),
        Figure("bars", "final bars stored", counts.bars),
        Figure("seconds", "first batch → last final bar stored", seconds, "s"),
        Figure(
            "tradesPerS",
            "end to end",
            counts.trades / seconds,
            "trades/s",
            f"target ≥ {TARGET_END_TO_END:,.0f}",
        ),
        Figure(
            "plainLoopTradesPerS",
            "plain Python loop, same trades, one process",
            plain_loop_rate(both),
            "trades/s",
            "the single-process limit",
        ),
    ]


# ---- 3. loop duration with 1,000 symbols × 3 intervals ------------------------------


class LiveSource:
    """A live-like synthetic trade source: every :data:`LIVE_PACE_SECONDS`, one batch per
    symbol of trades stamped with the wall clock, ``rate`` trades/s in all, random-walk
    prices. Runs until closed.

    Example::

        source = LiveSource([f"S{i}" for i in range(1000)], rate=100_000)
        pipeline = RealtimePipeline(source, write)
    """

    name = LIVE_SOURCE
    live = True

    def __init__(self, symbols: Sequence[str], rate: float, *, seed: int = 17) -> None:
        self.symbols = list(symbols)
        self.per_batch = max(1, round(rate * LIVE_PACE_SECONDS / len(self.symbols)))
        self.sent = 0
        self._rng = np.random.default_rng(seed)
        self._closed = False

    async def prepare(self) -> None:
        """Nothing to read ahead: trades are made as they go."""

    def close(self) -> None:
        self._closed = True

    async def __aiter__(self) -> AsyncIterator[TradeBatch]:
        n, per = len(self.symbols), self.per_batch
        levels = 100.0 + self._rng.random(n) * 100.0
        next_tick = time.monotonic()
        while not self._closed:
            now_ms = int(time.time() * 1000)
            # One draw per period for every symbol: the generator must not be the cost.
            steps = self._rng.standard_normal((n, per)) * 0.01
            prices = levels[:, None] + np.cumsum(steps, axis=1)
            levels = prices[:, -1].copy()
            qty = self._rng.integers(1, 10, size=(n, per)).astype(np.float64)
            times = np.full(per, now_ms, dtype=np.int64)
            for i, symbol in enumerate(self.symbols):
                yield TradeBatch(symbol, times, prices[i], qty[i])
                self.sent += per
                if i % LIVE_YIELD_EVERY == LIVE_YIELD_EVERY - 1:
                    await asyncio.sleep(0)
            next_tick += LIVE_PACE_SECONDS
            await asyncio.sleep(max(0.0, next_tick - time.monotonic()))


def live_symbols(count: int) -> list[str]:
    """``count`` symbol names (``S0000``, ``S0001``, ...)."""
    return [f"S{i:04d}" for i in range(count)]


async def loop_section(ctx: BenchContext) -> list[Figure]:
    """The pulling loop's cycle durations with the live source's symbols × 3 intervals."""
    size = ctx.size
    source = LiveSource(live_symbols(size.symbols), size.rate)
    async with _database(ctx, "loop") as write:
        pipeline = RealtimePipeline(
            source, write, workers=WORKERS, symbols=source.symbols, intervals=DEFAULT_INTERVALS
        )
        await pipeline.start()
        try:
            await asyncio.sleep(size.warmup)
            cycles, overruns, sent = pipeline.loop.cycles, pipeline.loop.overruns, source.sent
            missed = _missed_pulls(pipeline)
            started = time.perf_counter()
            await asyncio.sleep(size.seconds)
            spent = time.perf_counter() - started
            measured = pipeline.loop.cycles - cycles
            overruns = pipeline.loop.overruns - overruns
            sent = source.sent - sent
            timeouts, skipped = (
                now - then for now, then in zip(_missed_pulls(pipeline), missed, strict=True)
            )
            durations = [d * 1000.0 for d in pipeline.loop.durations[-measured:]]
            _, snapshot = pipeline.loop.channel.latest()
            refused = pipeline.refused_trades
        finally:
            await pipeline.stop()
    if not durations or snapshot is None:
        raise BenchError("loop: no cycle was measured")
    period_ms = pipeline.loop.period * 1000.0
    return [
        Figure("symbols", f"symbols × {len(DEFAULT_INTERVALS)} intervals", size.symbols),
        Figure("tradesPerS", "live source's trades", sent / spent, "trades/s"),
        Figure("cycles", "cycles measured (after warm-up)", len(durations)),
        Figure("p50Ms", "cycle duration p50", percentile(durations, 50), "ms"),
        Figure(
            "p99Ms",
            "cycle duration p99",
            percentile(durations, 99),
            "ms",
            f"target ≤ {TARGET_LOOP_P99_MS:.0f}",
        ),
        Figure("maxMs", "cycle duration max", max(durations), "ms", f"period {period_ms:.0f}"),
        Figure("overruns", "cycles longer than the period", overruns),
        Figure("pullTimeouts", "pulls past their timeout (a shard behind)", timeouts),
        Figure("skippedPulls", "pulls skipped (a shard's circuit open)", skipped),
        Figure("refusedTrades", "live trades refused by a busy shard", refused),
        Figure("snapshotEntries", "snapshot entries (series and stats)", len(snapshot.values)),
    ]


def _missed_pulls(pipeline: RealtimePipeline) -> tuple[int, int]:
    """Pull timeouts and skipped pulls so far, over every shard: a cycle that did not
    wait for a shard is short, so its duration alone would flatter the loop."""
    stats = pipeline.loop.shard_stats.values()
    return sum(s.timeouts for s in stats), sum(s.skipped for s in stats)


# ---- 4. memory per symbol ------------------------------------------------------------


async def _memory_run(ctx: BenchContext, symbols: int) -> tuple[float, int, int]:
    """Shard RSS (bytes, summed) and the parent's state (entries, pickled bytes) with the
    live source's trades for ``symbols`` symbols, once their bars formed."""
    size = ctx.size
    source = LiveSource(live_symbols(symbols), size.rate * symbols / size.symbols)
    pipeline = RealtimePipeline(source, None, workers=WORKERS, symbols=source.symbols)
    await pipeline.start()
    try:
        await asyncio.sleep(MEMORY_SETTLE_SECONDS)
        rss = sum(
            psutil.Process(shard.pid).memory_info().rss
            for shard in pipeline.shards
            if shard.pid is not None
        )
        values = dict(pipeline.loop.values)
        state_bytes = len(pickle.dumps(values, protocol=pickle.HIGHEST_PROTOCOL))
    finally:
        await pipeline.stop()
    return float(rss), len(values), state_bytes


async def memory_section(ctx: BenchContext) -> list[Figure]:
    """Shard RSS with the live source's symbols against one symbol, per extra symbol."""
    many = ctx.size.symbols
    rss_many, entries, state_bytes = await _memory_run(ctx, many)
    rss_one, _, state_one = await _memory_run(ctx, 1)
    extra = max(1, many - 1)
    mib = 2**20
    return [
        Figure("symbols", "symbols", many),
        Figure("shardRssMiB", f"shard RSS, {many:,} symbols ({WORKERS} shards)", rss_many / mib),
        Figure("baselineRssMiB", "shard RSS, 1 symbol", rss_one / mib, "MiB"),
        Figure(
            "rssPerSymbolKiB",
            "shard RSS per extra symbol",
            (rss_many - rss_one) / extra / 1024,
            "KiB",
        ),
        Figure("parentStateEntries", "parent's state entries", entries),
        Figure("parentStateKiB", "parent's state, pickled", state_bytes / 1024, "KiB"),
        Figure(
            "parentStatePerSymbolKiB",
            "parent's state per extra symbol, pickled",
            (state_bytes - state_one) / extra / 1024,
            "KiB",
        ),
    ]


# ---- 5. WebSocket ingest and 6. trade → kline push -----------------------------------


async def ingest_section(ctx: BenchContext) -> list[Figure]:
    """Binance aggTrade frames over a real local WebSocket through the live stream."""
    from tickbase.marketdata.realtime.stream_bench import ingest_rate

    frames = min(INGEST_FRAMES, max(1_000, ctx.size.trades))
    rate = await asyncio.to_thread(ingest_rate, frames)  # its own event loop and server
    return [
        Figure("frames", "aggTrade frames (2 symbols)", rate.trades),
        Figure(
            "tradesPerS",
            "BinanceTradeStream: socket → trade batches",
            rate.trades_per_second,
            "trades/s",
            f"target ≥ {TARGET_INGEST:,.0f}",
        ),
        Figure("parsePerS", "our parse alone (no socket)", rate.parse_per_second, "trades/s"),
        Figure("orjsonPerS", "orjson.loads alone (the limit)", rate.orjson_per_second, "frames/s"),
    ]


async def push_section(ctx: BenchContext) -> list[Figure]:
    """Trades with the wall clock's time → the gateway's kline update frames."""
    from tickbase.app import App
    from tickbase.bench.realtime_push import push_latency

    seconds = max(2.0, min(10.0, ctx.size.seconds))
    async with migrated_database(ctx.server_dsn, "realtime_push") as dsn, App(dsn) as app:
        got = await push_latency(app, seconds=seconds)
    return [
        Figure("pushes", "kline update frames received", got["pushes"]),
        Figure(
            "tradePushP99Ms",
            "trade → push p99 (each trade until an update shows it)",
            got["trade_push_p99_ms"],
            "ms",
            f"target ≤ {TARGET_PUSH_P99_MS:.0f} ms",
        ),
        Figure("tradePushP50Ms", "trade → push p50", got["trade_push_p50_ms"], "ms"),
        Figure("pushP99Ms", "newest trade → its push p99", got["push_p99_ms"], "ms"),
        Figure("periodMs", "loop period", got["period_ms"], "ms"),
    ]


SECTIONS: tuple[Section, ...] = (
    Section("aggregation", "Aggregation rate per worker", aggregation_section),
    Section("endToEnd", "End to end: replay → 2 workers → stored final bars", end_to_end_section),
    Section("loop", "Pulling loop duration, 1,000 symbols × 3 intervals", loop_section),
    Section("memory", "Memory per symbol", memory_section),
    Section("ingest", "WebSocket ingest from a local fake Binance stream", ingest_section),
    Section("push", "Trade → kline push over the gateway's WebSocket", push_section),
)


# ---- running and printing -------------------------------------------------------------


@contextlib.asynccontextmanager
async def _database(ctx: BenchContext, label: str) -> AsyncIterator[Write]:
    """A fresh migrated database (dropped afterwards) and a K-line writer into it."""
    async with (
        migrated_database(ctx.server_dsn, f"realtime_{label}") as dsn,
        create_pool(dsn, min_size=1, max_size=2, name=f"bench-realtime-{label}") as pool,
    ):
        yield kline_writer(KlineStore(pool), "bench")


async def run_realtime_bench(
    server_dsn: str,
    size: BenchSize = BenchSize(),
    *,
    sections: Sequence[Section] = SECTIONS,
    progress: Callable[[str], None] = lambda _line: None,
) -> dict[str, list[Figure]]:
    """Run ``sections`` in order (each section's figures by its key)."""
    ctx = BenchContext(server_dsn, size, progress)
    results: dict[str, list[Figure]] = {}
    for section in sections:
        progress(f"{section.title} ...")
        results[section.key] = await section.run(ctx)
    return results


def results_json(results: dict[str, list[Figure]]) -> str:
    """One line: ``{"realtime": {"aggregation": {"vectorisedTradesPerS": ...}, ...}}``."""
    return json.dumps(
        {SUBJECT: {key: {f.key: f.value for f in figures} for key, figures in results.items()}}
    )


def print_results(results: dict[str, list[Figure]]) -> None:
    """One Rich table per section: figure, value, unit, and what it is set beside."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    titles = {section.key: section.title for section in SECTIONS}
    for key, figures in results.items():
        table = Table(title=titles.get(key, key))
        table.add_column("figure")
        table.add_column("value", justify="right")
        table.add_column("unit")
        table.add_column("beside it")
        for figure in figures:
            digits = 2 if figure.unit in {"ms", "s", "MiB", "KiB"} else 0
            table.add_row(figure.label, f"{figure.value:,.{digits}f}", figure.unit, figure.beside)
        console.print(table)


async def run_realtime_command(
    *, database_url: str | None, as_json: bool, size: BenchSize = BenchSize()
) -> dict[str, list[Figure]]:
    """Run the real-time benchmark and print it (Rich tables, or one JSON line).

    Example: ``await run_realtime_command(database_url=None, as_json=True)`` prints
    ``{"realtime": {"aggregation": {...}, "endToEnd": {...}, "loop": {...}, ...}}``.
    """

    def progress(line: str) -> None:
        if not as_json:
            print(line, file=sys.stderr, flush=True)

    settings = load_settings(database_url=database_url)
    server_dsn, _ = await asyncio.to_thread(resolve_database_url, settings, start=False)
    results = await run_realtime_bench(server_dsn, size, progress=progress)
    if as_json:
        print(results_json(results), flush=True)
    else:
        print_results(results)
    return results
