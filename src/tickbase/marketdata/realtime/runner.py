"""Running the real-time pipeline from a command: parsing its options, choosing its source.

The CLI (``tickbase realtime run|replay``) and ``tickbase up`` call these; they build a
:class:`~tickbase.marketdata.realtime.pipeline.RealtimePipeline` whose writer stores final
bars in the K-line table under the source's name (``replay`` for a replayed file, so a
replayed bar is never mistaken for an exchange's).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Final

from tickbase.cluster.lease import Fence
from tickbase.marketdata.realtime.aggregator import DEFAULT_LATENESS_MS
from tickbase.marketdata.realtime.kline import DEFAULT_INTERVALS, interval_ms
from tickbase.marketdata.realtime.ownership import OWNERSHIP_TTL, SymbolOwnership
from tickbase.marketdata.realtime.pipeline import PipelineCounts, RealtimePipeline, TradeSource
from tickbase.marketdata.realtime.replay_source import ReplaySource
from tickbase.marketdata.realtime.trades import TradeBatch
from tickbase.marketdata.realtime.writer import kline_writer
from tickbase.marketdata.store import KlineStore
from tickbase.service import Service, ServiceState

__all__ = [
    "SAMPLE_SYMBOL",
    "LiveRun",
    "NoTrades",
    "ReplayOutcome",
    "SourceChoice",
    "build_pipeline",
    "choose_source",
    "parse_intervals",
    "parse_speed",
    "replay_file",
    "sample_replay",
    "sample_trades_path",
]

logger = logging.getLogger("tickbase.realtime")

PROBE_SECONDS: Final = 5.0
"""How long ``auto`` waits for the live stream's first trade before replaying."""

SAMPLE_SYMBOL: Final = "ES"
"""The symbol of the bundled trade file (500,000 real E-mini S&P 500 trades, 2013)."""


def sample_trades_path() -> Path:
    """The bundled trade file (``marketdata/sample/es-ticks.csv.gz``)."""
    return Path(str(resources.files("tickbase.marketdata") / "sample" / "es-ticks.csv.gz"))


def parse_speed(text: str) -> float | None:
    """``max`` → ``None`` (as fast as the shards take it), else a positive factor."""
    if text.strip().lower() == "max":
        return None
    try:
        speed = float(text)
    except ValueError:
        raise ValueError(f"invalid speed {text!r}: 'max' or a positive number (e.g. 60)") from None
    if not speed > 0 or speed == float("inf"):
        raise ValueError(f"invalid speed {text!r}: 'max' or a positive number (e.g. 60)")
    return speed


def parse_intervals(text: str | Sequence[str]) -> tuple[str, ...]:
    """Comma-separated K-line intervals with a fixed length (``1m,5m,1h``)."""
    names = [n.strip() for n in text.split(",")] if isinstance(text, str) else list(text)
    names = [n for n in names if n]
    if not names:
        raise ValueError("no interval given: e.g. --intervals 1m,5m,1h")
    for name in names:
        try:
            interval_ms(name)
        except ValueError as exc:
            raise ValueError(
                f"invalid interval {name!r} ({exc}): use seconds, minutes, hours, days or "
                "weeks, e.g. 1s, 1m, 5m, 1h, 1d, 1w"
            ) from None
    if len(set(names)) != len(names):
        raise ValueError(f"intervals {','.join(names)} name one twice")
    return tuple(names)


def build_pipeline(
    pool: Any,
    source: TradeSource,
    *,
    intervals: Sequence[str] = DEFAULT_INTERVALS,
    workers: int = 2,
    symbols: Sequence[str] = (),
    binance_url: str | None = None,
    fence: Callable[[str], Fence | None] | None = None,
    lateness_ms: int = DEFAULT_LATENESS_MS,
    backfill_margin_ms: int | None = None,
    **options: Any,
) -> RealtimePipeline:
    """A pipeline over ``source`` storing final bars under ``source.name``; a live
    exchange stream's gaps (and what a restart missed) are backfilled over REST from
    ``binance_url``, ``backfill_margin_ms`` (default
    :data:`~tickbase.marketdata.realtime.backfill.BACKFILL_MARGIN_MS`) after they are final."""
    store = KlineStore(pool)
    backfill = None
    if binance_url is not None and source.name == "binance":
        from tickbase.marketdata.realtime.backfill import BACKFILL_MARGIN_MS, GapBackfill

        # The backfill must wait for the same lateness as the shards: a bar fetched before
        # the shards finalise it would be fetched from an exchange not yet settled either.
        backfill = GapBackfill(
            store,
            base_url=binance_url,
            intervals=intervals,
            lateness_ms=lateness_ms,
            margin_ms=BACKFILL_MARGIN_MS if backfill_margin_ms is None else backfill_margin_ms,
        )

    async def last_stored(symbol: str, interval: str) -> int | None:
        bars = await store.latest(symbol, interval, limit=1, source=source.name)
        return int(bars[-1].open_time.timestamp() * 1000) if bars else None

    return RealtimePipeline(
        source,
        kline_writer(store, source.name, fence=fence),
        intervals=intervals,
        workers=workers,
        symbols=symbols,
        lateness_ms=lateness_ms,
        backfill=backfill,
        last_stored=last_stored,
        on_alert=_log_alert,
        **options,
    )


def sample_replay(symbols: Sequence[str] = (SAMPLE_SYMBOL,), speed: float = 1.0) -> ReplaySource:
    """The bundled trades at ``speed``× real time, shifted to now, repeating: bars form
    live (each symbol of ``symbols`` gets the same ES trades)."""
    return ReplaySource(
        sample_trades_path(),
        symbol=SAMPLE_SYMBOL,
        speed=speed,
        shift_to_now=True,
        repeat=True,
        aliases={SAMPLE_SYMBOL: list(symbols)},
    )


@dataclass(frozen=True, slots=True)
class ReplayOutcome:
    """What ``realtime replay`` prints."""

    counts: PipelineCounts
    seconds: float
    symbols: list[str]
    intervals: list[str]

    def to_dict(self) -> dict[str, Any]:
        out = self.counts.to_dict()
        out.update(
            {
                "seconds": round(self.seconds, 3),
                "tradesPerSecond": round(self.counts.trades / self.seconds) if self.seconds else 0,
                "symbols": self.symbols,
                "intervals": self.intervals,
            }
        )
        return out


async def replay_file(
    pool: Any,
    path: str | os.PathLike[str],
    *,
    symbol: str | None,
    intervals: Sequence[str] = DEFAULT_INTERVALS,
    workers: int = 2,
    speed: float | None = None,
) -> ReplayOutcome:
    """Feed a trade file through the whole pipeline; return once every final bar is stored."""
    source = ReplaySource(path, symbol=symbol, speed=speed)
    pipeline = build_pipeline(pool, source, intervals=intervals, workers=workers)
    began = time.perf_counter()
    await pipeline.start()
    try:
        await pipeline.wait_stored()
    finally:
        await pipeline.stop()
    return ReplayOutcome(
        pipeline.counts(), time.perf_counter() - began, pipeline.symbols, list(intervals)
    )


@dataclass(frozen=True, slots=True)
class SourceChoice:
    """Where a live pipeline's trades come from: ``make(symbols)`` builds the source of
    the symbols this node owns (they change as nodes come and go)."""

    name: str
    said: str
    make: Callable[[Sequence[str]], TradeSource]


async def choose_source(
    settings: Any, symbols: Sequence[str], choice: str = "auto"
) -> SourceChoice:
    """The source ``choice`` names, and one line saying what it is.

    ``replay``: the bundled trades at real time as each symbol, shifted to now, stored as
    source ``replay``. ``binance``: the live stream (it reconnects until it answers).
    ``auto``: the live stream if it answers within :data:`PROBE_SECONDS`, else the replay
    (said once, and marked by the source ``replay`` as the collectors' replays are).
    """
    from tickbase.marketdata.realtime.binance_stream import BinanceTradeStream, probe

    def replay(owned: Sequence[str]) -> TradeSource:
        return sample_replay(owned)

    def binance(owned: Sequence[str]) -> TradeSource:
        if not owned:
            return NoTrades("binance")
        return BinanceTradeStream(owned, base_url=url)

    url = settings.binance_ws_url
    live_line = f"real-time source: Binance at {url}"
    if choice == "replay":
        return SourceChoice("replay", _replay_line(symbols, "chosen"), replay)
    if choice == "binance":
        return SourceChoice("binance", live_line, binance)
    problem = await probe(url, symbols, timeout=PROBE_SECONDS)
    if problem is None:
        return SourceChoice("binance", live_line, binance)
    why = f"no live stream answering ({problem})"
    return SourceChoice("replay", _replay_line(symbols, why), replay)


class LiveRun(Service):
    """A live pipeline whose symbols this node owns by fenced leases, shared with every
    other node running one (:class:`~tickbase.marketdata.realtime.ownership.SymbolOwnership`):
    started with the symbols the first round gave it, re-sourced when they change, and
    every bar written with the proof that it still owns its symbol."""

    name = "realtime-live"

    def __init__(
        self,
        pool: Any,
        choice: SourceChoice,
        symbols: Sequence[str],
        *,
        intervals: Sequence[str] = DEFAULT_INTERVALS,
        workers: int = 2,
        binance_url: str | None = None,
        holder: str | None = None,
        lease_ttl: float = OWNERSHIP_TTL,
        **options: Any,
    ) -> None:
        super().__init__()
        self.choice = choice
        self.ownership = SymbolOwnership(
            pool, symbols, holder=holder, ttl=lease_ttl, on_change=self._owned
        )
        self.pipeline = build_pipeline(
            pool,
            choice.make([]),
            intervals=intervals,
            workers=workers,
            symbols=symbols,
            binance_url=binance_url,
            fence=self.ownership.fence,
            **options,
        )

    def _owned(self, owned: frozenset[str]) -> None:
        if self.pipeline.state in (ServiceState.STARTING, ServiceState.RUNNING):
            self.pipeline.replace_source(self.choice.make(sorted(owned)))

    async def serve(self) -> None:
        await self.ownership.rebalance()  # the first share, before anything streams
        self.pipeline.source = self.choice.make(sorted(self.ownership.owned))
        await self.pipeline.start()
        await self.ownership.start()
        self.mark_started()
        try:
            await self.wait_stopping()
        finally:
            await self.ownership.stop()
            await self.pipeline.stop()


class NoTrades:
    """A live source with no symbol: this node owns none right now."""

    live = True

    def __init__(self, name: str) -> None:
        self.name = name
        self._closed = asyncio.Event()

    async def prepare(self) -> None:
        """Nothing to prepare."""

    def close(self) -> None:
        self._closed.set()

    async def __aiter__(self) -> AsyncIterator[TradeBatch]:
        await self._closed.wait()
        return
        yield  # an async generator that yields nothing


def _replay_line(symbols: Sequence[str], why: str) -> str:
    return (
        f"real-time source: replay ({why}): the bundled ES trades at real time as "
        f"{', '.join(symbols)}, shifted to now, stored as source replay"
    )


def _log_alert(kind: str, message: str) -> None:
    logger.error("real-time alert %s: %s", kind, message)
