"""The collection pipeline: collect → validate → clean → store → cache → indicators.

:class:`MarketData` runs one collection of each kind through its source chain
(:class:`~tickbase.marketdata.collector.Collector`) and stores what served;
:func:`install` makes its steps tickbase tasks on a queue of their own and adds the
default schedules (K-lines every 5 min, fear-and-greed hourly, FRED daily at 03:00,
Glassnode hourly, an integrity check every 30 min), so the database schedules,
retries and records them like any task. Each collecting task's result is the
record of its fallback steps: which source served and why the others did not.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import httpx
from psycopg_pool import AsyncConnectionPool

from tickbase.db.pool import AsyncConn
from tickbase.marketdata.cache import MarketCache
from tickbase.marketdata.cleaning import clean_observations, closed_bars, forward_fill
from tickbase.marketdata.collector import (
    Collection,
    Collector,
    Kind,
    Kline,
    KlineRequest,
    Observation,
    SeriesRequest,
    Source,
    SourceLimiter,
    interval_seconds,
)
from tickbase.marketdata.sources.chains import MarketSources
from tickbase.marketdata.sources.feargreed import FEAR_GREED_SERIES
from tickbase.marketdata.state import IndicatorStates
from tickbase.marketdata.store import DEFAULT_SOURCE, KlineStore, ObservationStore, Q
from tickbase.settings import Settings

logger = logging.getLogger("tickbase.marketdata")

QUEUE = "marketdata"
INTEGRITY_WINDOW = timedelta(minutes=30)
INTEGRITY_MIN_BARS = 24  # a longer interval is checked over its last 24 bars
CACHE_KIND: dict[Kind, str] = {
    "klines": "klines",
    "sentiment": "score",
    "macro": "macro",
    "onchain": "score",
}
DEFAULTS: dict[Kind, float | None] = {"sentiment": 50.0}
"""What a kind serves when every source is down and nothing is cached."""
DEFAULT_LABELS: dict[Kind, str] = {"sentiment": "Neutral"}
"""The label stored with a default (alternative.me classifies 50 as Neutral)."""


def split_names(text: str) -> list[str]:
    """``"BTCUSDT, ETHUSDT"`` → ``["BTCUSDT", "ETHUSDT"]``."""
    return [name.strip() for name in text.split(",") if name.strip()]


class MarketData:
    """One collection of each kind, stored, cached and recorded.

    Example::

        market = MarketData(pool, MarketSources.from_settings(settings))
        record = await market.collect_klines("BTCUSDT", ["1h", "4h", "1d"])
    """

    def __init__(
        self,
        pool: AsyncConnectionPool[AsyncConn],
        sources: MarketSources,
        *,
        client_factory: Callable[[], httpx.AsyncClient] = httpx.AsyncClient,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.pool = pool
        self.sources = sources
        self.klines = KlineStore(pool)
        self.observations = ObservationStore(pool)
        self.cache = MarketCache(pool)
        self.indicators = IndicatorStates(pool)
        self.limiter = SourceLimiter()
        self._client_factory = client_factory
        self._clock = clock
        self._offline: set[str] = set()
        """Symbols fed from the replay source (said once, until a live source answers)."""

    def _collector(
        self, client: httpx.AsyncClient, chain: Sequence[Source], **kw: Any
    ) -> Collector:
        return Collector(
            chain,
            client,
            load_cached=self._cached_value,
            mark_stale=self.cache.mark_stale,
            limiter=self.limiter,
            **kw,
        )

    async def _cached_value(self, key: str) -> Any:
        hit = await self.cache.get(key)
        return hit.value if hit is not None else None

    # ---- K-lines ---------------------------------------------------------------------

    async def collect_klines(
        self, symbol: str, intervals: Sequence[str], *, limit: int = 100
    ) -> dict[str, Any]:
        """Collect, clean and store the last ``limit`` bars of each interval of a symbol.

        A live symbol is asked of the live chain only (then the stale cache): recorded
        data is never stored under it. When no live source answers, the replayed series
        (``REPLAY:*``, each at its own interval) are collected instead, under their own
        names, and the record holds them under ``"replay"``. A ``REPLAY:*`` symbol is
        asked of the replay source alone.

        Returns the record kept as the task's result: per interval, which source served,
        the steps, how many bars were stored and filled.
        """
        replayed = symbol in self.sources.replay.series
        chain: Sequence[Source] = [self.sources.replay] if replayed else self.sources.klines
        records: dict[str, Any] = {}
        async with self._client_factory() as client:
            for interval in intervals:
                collector = self._collector(client, chain, cache_key=f"klines:{symbol}:{interval}")
                collection = await collector.collect(KlineRequest(symbol, interval, limit))
                records[interval] = await self._store_klines(symbol, interval, collection)
        out: dict[str, Any] = {"symbol": symbol, "intervals": records}
        if not replayed and self._say_offline_or_back(symbol, records):
            out["replay"] = await self.collect_replay(limit=limit)
        return out

    async def collect_replay(self, *, limit: int = 100) -> dict[str, Any]:
        """Collect every replayed series at its own interval; ``{symbol: {interval: record}}``."""
        replay = self.sources.replay
        records: dict[str, Any] = {}
        async with self._client_factory() as client:
            for series in replay.series.values():
                collector = self._collector(client, [replay])
                request = KlineRequest(series.symbol, series.interval, limit)
                collection = await collector.collect(request)
                records[series.symbol] = {
                    series.interval: await self._store_klines(
                        series.symbol, series.interval, collection
                    )
                }
        return records

    async def _store_klines(
        self, symbol: str, interval: str, collection: Collection
    ) -> dict[str, Any]:
        record = collection.to_dict()
        bars = [r for r in collection.records if isinstance(r, Kline)]
        if not bars or collection.served_by is None:
            return {**record, "stored": 0}
        source = collection.served_by
        latest = bars[-1]
        closed = closed_bars(bars, interval, self._clock())
        if collection.live:
            # A replayed file's gaps are the market being shut: they stay gaps.
            closed = forward_fill(closed, interval)
        stored = await self.klines.upsert(source, symbol, interval, closed, durable=False)
        await self.cache.put(
            f"price:{symbol}",
            {
                "price": latest.close,
                "time": latest.open_time.isoformat(),
                "source": source,
                "live": collection.live,
            },
            kind="price",
        )
        await self.cache.put(
            f"klines:{symbol}:{interval}",
            {
                "source": source,
                "live": collection.live,
                "bars": [
                    [b.open_time.isoformat(), b.open, b.high, b.low, b.close, b.volume]
                    for b in closed
                ],
            },
            kind="klines",
        )
        filled = sum(1 for b in closed if b.is_filled)
        if filled:
            logger.info(
                "%s %s %s: %d missing bar(s) forward-filled", source, symbol, interval, filled
            )
        return {**record, "source": source, "stored": stored, "filled": filled}

    def _say_offline_or_back(self, symbol: str, records: Mapping[str, Any]) -> bool:
        """Say (once) when a live symbol goes offline and when it is back; whether it is offline."""
        live = {r["served_by"] for r in records.values()} - {"cache", None}
        if not live:
            if symbol not in self._offline:
                self._offline.add(symbol)
                logger.warning(
                    "%s: no live source answers (%s); nothing is stored under %s until one "
                    "does; offline data: %s (source = %s)",
                    symbol,
                    ", ".join(s.name for s in self.sources.klines),
                    symbol,
                    ", ".join(self.sources.replay.series),
                    self.sources.replay.name,
                )
            return True
        if symbol in self._offline:
            self._offline.discard(symbol)
            logger.warning("%s: live data again (%s)", symbol, ", ".join(sorted(live)))
        return False

    async def advance_indicators(self, source: str, symbol: str, interval: str) -> dict[str, Any]:
        """Feed the series' new bars to its saved indicator state; the latest values."""
        values = await self.indicators.advance(source, symbol, interval)
        last = values[-1] if values else None
        return {
            "source": source,
            "symbol": symbol,
            "interval": interval,
            "bars": len(values),
            "latest": None if last is None else last.row(),
        }

    # ---- other series ---------------------------------------------------------------

    async def collect_series(self, kind: Kind, series: str, *, limit: int = 100) -> dict[str, Any]:
        """Collect one sentiment, macro or on-chain series, clean it by its kind's rule,
        store and cache it. The record says which source served (or the cache, or the
        default) and why the others did not."""
        chain = {
            "sentiment": self.sources.sentiment,
            "macro": self.sources.macro,
            "onchain": self.sources.onchain,
        }[kind]
        async with self._client_factory() as client:
            collector = self._collector(
                client, chain, default=DEFAULTS.get(kind), cache_key=f"{kind}:{series}"
            )
            collection = await collector.collect(SeriesRequest(series, limit))
        record: dict[str, Any] = {"kind": kind, "series": series, **collection.to_dict()}
        observations = [r for r in collection.records if isinstance(r, Observation)]
        if observations and collection.served_by is not None:
            cleaned = clean_observations(kind, observations)
            stored_series = cleaned[0].series if cleaned else series
            stored = await self.observations.upsert(
                stored_series, kind, collection.served_by, cleaned
            )
            if cleaned:
                last = cleaned[-1]
                await self.cache.put(
                    f"{kind}:{series}",
                    {
                        "value": last.value,
                        "label": last.label,
                        "observed_at": last.observed_at.isoformat(),
                        "source": collection.served_by,
                        "live": True,
                    },
                    kind=CACHE_KIND[kind],
                )
                record["value"] = last.value
            record.update(stored=stored, filled=sum(1 for o in cleaned if o.is_filled))
        elif collection.served_by == "cache":
            record["value"] = (
                collection.value.get("value") if isinstance(collection.value, dict) else None
            )
        elif collection.served_by == "default":
            record.update(await self._store_default(kind, series, collection.value))
        return record

    async def _store_default(self, kind: Kind, series: str, value: Any) -> dict[str, Any]:
        """Store the default a kind served as a filled observation (source ``default``)
        at the instant its source would have stamped (the current UTC day for the daily
        fear-and-greed index), so reads show what the task's result says was served.

        It is not cached: the cache holds what a source said, and a cached default would
        be served next time as if one had. A value a source gave for that instant is
        never replaced (``observations_upsert``): ``stored`` is then 0.
        """
        observed_at = (
            self._clock().astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        )
        filled = Observation(
            series, observed_at, float(value), label=DEFAULT_LABELS.get(kind), is_filled=True
        )
        stored = await self.observations.upsert(series, kind, DEFAULT_SOURCE, [filled])
        return {
            "value": value,
            "observed_at": observed_at.isoformat(),
            "stored": stored,
            "filled": stored,
        }

    # ---- integrity -------------------------------------------------------------------

    async def check_integrity(
        self, symbols: Sequence[str], intervals: Sequence[str]
    ) -> dict[str, Any]:
        """Completeness of each series over its window (the last 30 minutes, or its last
        24 bars when that is longer); the ``data_completeness`` alert rule reads it."""
        now = self._clock()
        checked: list[dict[str, Any]] = []
        async with self.pool.connection() as conn:
            for symbol in symbols:
                for interval in intervals:
                    step = interval_seconds(interval)
                    end_epoch = math.floor(now.timestamp() / step) * step
                    span = max(INTEGRITY_WINDOW.total_seconds(), INTEGRITY_MIN_BARS * step)
                    start_epoch = end_epoch - math.ceil(span / step) * step
                    row = await (
                        await conn.execute(
                            Q["series_integrity_check"],
                            {
                                "symbol": symbol,
                                "interval": interval,
                                "start": datetime.fromtimestamp(start_epoch, UTC),
                                "end": datetime.fromtimestamp(end_epoch, UTC),
                                "step": step,
                            },
                        )
                    ).fetchone()
                    assert row is not None
                    expected, present, completeness, missing = row
                    checked.append(
                        {
                            "symbol": symbol,
                            "interval": interval,
                            "expected": expected,
                            "present": present,
                            "completeness": round(float(completeness), 2),
                            "missing": len(missing),
                        }
                    )
                    if completeness < 95:
                        logger.warning(
                            "%s %s: %.1f%% complete (%d of %d bars)",
                            symbol,
                            interval,
                            completeness,
                            present,
                            expected,
                        )
        return {"series": checked}


# ---- tasks and schedules ---------------------------------------------------------------


class TaskHost(Protocol):
    """What :func:`install` needs of a :class:`tickbase.App` (the app layer sits above)."""

    settings: Settings
    extensions: dict[str, Any]

    @property
    def pool(self) -> AsyncConnectionPool[AsyncConn]: ...

    def task(
        self,
        func: None = None,
        /,
        *,
        name: str | None = None,
        queue: str = "default",
        priority: int = 0,
        retries: int = 0,
        retry_delay: float = 1.0,
        timeout: float | None = None,
        rate_limit: str | None = None,
        concurrency_key: str | None = None,
        concurrency_limit: int = 1,
    ) -> Callable[[Callable[..., Any]], Any]: ...

    def schedule(self, name: str, task: Any, **options: Any) -> Any: ...


@dataclass
class MarketTasks:
    """The installed task functions (``defer`` them to collect now)."""

    collect_klines: Any
    collect_series: Any
    advance_indicators: Any
    check_integrity: Any
    symbols: list[str]
    intervals: list[str]
    series: list[dict[str, str]] = field(default_factory=list)
    """The non-price series to collect at once: fear-and-greed, and those whose
    source has its API key (the others would only be skipped)."""

    async def collect_now(self) -> None:
        """Enqueue one K-line collection per symbol and one per series (``tickbase up``
        does at start-up, so a newcomer sees data at once instead of at the next
        5-minute or hourly mark)."""
        await self.collect_klines.defer_many(
            [{"symbol": s, "intervals": self.intervals} for s in self.symbols]
        )
        if self.series:
            await self.collect_series.defer_many(self.series)


def install(app: TaskHost, sources: MarketSources | None = None) -> MarketTasks:
    """Register the market-data tasks and their default schedules on ``app``.

    Schedules (each chain's first source declares its cron; stored when a node starts,
    then adjustable like any other through the API or ``tickbase schedules``):
    ``marketdata.klines.<SYMBOL>`` every 5 min,
    ``marketdata.fear-greed`` hourly, ``marketdata.fred.<SERIES>`` daily at 03:00 UTC,
    ``marketdata.glassnode.<METRIC>`` hourly, ``marketdata.integrity`` every 30 min.
    After each K-line collection a follow-up task advances the indicators of every
    series that got new bars.
    """
    settings = app.settings
    symbols = split_names(settings.market_symbols)
    intervals = split_names(settings.market_intervals)
    chains = sources or MarketSources.from_settings(settings)
    market: MarketData | None = None

    def pipeline() -> MarketData:
        nonlocal market
        if market is None:
            market = MarketData(app.pool, chains)
        return market

    @app.task(name="marketdata.indicators", queue=QUEUE, timeout=300)
    async def advance_indicators(source: str, symbol: str, interval: str) -> dict[str, Any]:
        """Advance one series' indicators over its new bars."""
        return await pipeline().advance_indicators(source, symbol, interval)

    @app.task(name="marketdata.collect_klines", queue=QUEUE, timeout=900)
    async def collect_klines(
        symbol: str, intervals: list[str] | None = None, limit: int = 100
    ) -> dict[str, Any]:
        """Collect a symbol's K-lines (Binance → CoinGecko → cache; offline: the replay series)."""
        record = await pipeline().collect_klines(symbol, intervals or [], limit=limit)
        series = {symbol: record["intervals"], **record.get("replay", {})}
        follow_ups = [
            {"source": r["source"], "symbol": name, "interval": interval}
            for name, by_interval in series.items()
            for interval, r in by_interval.items()
            if r.get("stored")
        ]
        if follow_ups:
            await advance_indicators.defer_many(follow_ups)
        return record

    @app.task(name="marketdata.collect_series", queue=QUEUE, timeout=900)
    async def collect_series(kind: str, series: str, limit: int = 100) -> dict[str, Any]:
        """Collect a sentiment, macro or on-chain series."""
        if kind not in ("sentiment", "macro", "onchain"):
            raise ValueError(f"unknown series kind {kind!r}: use sentiment, macro or onchain")
        return await pipeline().collect_series(kind, series, limit=limit)  # type: ignore[arg-type]

    @app.task(name="marketdata.integrity", queue=QUEUE, timeout=300)
    async def check_integrity() -> dict[str, Any]:
        """Completeness of every collected series (alert below 95%)."""
        return await pipeline().check_integrity(symbols, intervals)

    builtin = {"origin": "builtin"}
    for symbol in symbols:
        app.schedule(
            f"marketdata.klines.{symbol}",
            collect_klines,
            cron=chains.klines[0].schedule,
            kwargs={"symbol": symbol, "intervals": intervals},
            description=f"{symbol} K-lines ({', '.join(intervals)}), last 100 bars",
            **builtin,
        )
    app.schedule(
        "marketdata.fear-greed",
        collect_series,
        cron=chains.sentiment[0].schedule,
        kwargs={"kind": "sentiment", "series": FEAR_GREED_SERIES},
        description="alternative.me fear-and-greed index (default 50 when unknown)",
        **builtin,
    )
    keyed = (
        ("fred", "macro", chains.macro, settings.fred_series, "FRED", "TICKBASE_FRED_API_KEY"),
        (
            "glassnode",
            "onchain",
            chains.onchain,
            settings.glassnode_metrics,
            "Glassnode",
            "TICKBASE_GLASSNODE_API_KEY",
        ),
    )
    now: list[dict[str, str]] = [{"kind": "sentiment", "series": FEAR_GREED_SERIES}]
    keys = {"fred": settings.fred_api_key, "glassnode": settings.glassnode_api_key}  # set or None
    for prefix, kind, chain, names, title, key in keyed:
        for series in split_names(names):
            if keys[prefix]:
                now.append({"kind": kind, "series": series})
            app.schedule(
                f"marketdata.{prefix}.{series}",
                collect_series,
                cron=chain[0].schedule,
                kwargs={"kind": kind, "series": series},
                description=f"{title} {series} (needs {key})",
                **builtin,
            )
    app.schedule(
        "marketdata.integrity",
        check_integrity,
        cron="*/30 * * * *",
        description="K-line completeness per series (alert below 95%)",
        **builtin,
    )
    tasks = MarketTasks(
        collect_klines, collect_series, advance_indicators, check_integrity, symbols, intervals, now
    )
    app.extensions["marketdata"] = tasks
    return tasks
