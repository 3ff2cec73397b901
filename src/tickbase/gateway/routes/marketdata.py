"""Market-data reads: ``/api/v1/klines``, ``/api/v1/indicators``,
``/api/v1/observations``, what is stored (``/api/v1/marketdata/series``) and how
complete it is (``/api/v1/marketdata/integrity``) (the TradingView UDF datafeed under ``/udf`` is
:mod:`tickbase.gateway.routes.udf`: it speaks TradingView's wire format, errors included).
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from tickbase.gateway.errors import ApiError
from tickbase.gateway.routes.deps import ERRORS, Gw, current_principal
from tickbase.gateway.schemas import CamelModel
from tickbase.marketdata.indicators import batch
from tickbase.marketdata.store import (
    INTERVAL_PATTERN,
    SERIES_PATTERN,
    SYMBOL_PATTERN,
    KlineStore,
    ObservationStore,
)
from tickbase.marketdata.summary import integrity_checks, series_summaries

INDICATOR_WARMUP_BARS = 2_000

Symbol = Annotated[str, Query(pattern=SYMBOL_PATTERN)]
Interval = Annotated[str, Query(pattern=INTERVAL_PATTERN)]


class KlineOut(CamelModel):
    source: str
    symbol: str
    interval: str
    open_time: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float
    is_anomaly: bool
    is_filled: bool


router = APIRouter(responses=ERRORS, dependencies=[Depends(current_principal)])


async def _known(store: KlineStore, symbol: str, interval: str) -> None:
    """404 naming what exists when the series is not stored."""
    if await store.has_series(symbol, interval):
        return
    # Only a miss lists what exists (a scan of the series): every hit is one probe.
    series = await store.series()
    symbols = sorted({s for s, _ in series})
    if symbol not in symbols:
        raise ApiError(404, "NOT_FOUND", f"unknown symbol {symbol!r}", {"symbols": symbols})
    intervals = sorted(i for s, i in series if s == symbol)
    if interval not in intervals:
        raise ApiError(
            404,
            "NOT_FOUND",
            f"no {interval!r} bars of {symbol}",
            {"intervals": intervals},
        )


@router.get("/api/v1/klines", response_model=list[KlineOut], tags=["marketdata"])
async def klines(
    gw: Gw,
    symbol: Symbol,
    interval: Interval,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> Any:
    """The latest bars of a series, oldest first, from its current source (the one of its
    newest bar: ``replay`` while no live source answers)."""
    store = KlineStore(gw.app.pool)
    await _known(store, symbol, interval)
    return [asdict(b) for b in await store.latest(symbol, interval, limit=limit)]


class ObservationOut(CamelModel):
    series: str
    observed_at: datetime
    kind: str
    source: str
    value: float
    label: str | None
    is_filled: bool


@router.get("/api/v1/observations", response_model=list[ObservationOut], tags=["marketdata"])
async def observations(
    gw: Gw,
    series: Annotated[str, Query(pattern=SERIES_PATTERN)],
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> Any:
    """The latest values of a non-price series (fear-and-greed, a FRED series, a
    Glassnode metric), oldest first; ``isFilled`` marks values the cleaning rules
    supplied."""
    store = ObservationStore(gw.app.pool)
    found = await store.latest(series, limit=limit)
    if not found:
        known = [name for name, _ in await store.series()]
        raise ApiError(404, "NOT_FOUND", f"unknown series {series!r}", {"series": known})
    return [asdict(o) for o in found]


class IndicatorsOut(CamelModel):
    source: str
    open_time: datetime
    ema21: float | None
    ema55: float | None
    rsi14: float | None
    macd: float | None
    macd_signal: float | None
    macd_hist: float | None
    bb_upper: float | None
    bb_middle: float | None
    bb_lower: float | None
    atr14: float | None


@router.get("/api/v1/indicators", response_model=list[IndicatorsOut], tags=["marketdata"])
async def indicators(
    gw: Gw,
    symbol: Symbol,
    interval: Interval,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> Any:
    """EMA21, EMA55, RSI14, MACD(12,26,9), Bollinger(20, 2), ATR14 of the latest bars,
    oldest first (``null`` while warming up).

    Computed with TA-Lib over the bars asked for plus 2,000 before them: the recursive
    indicators forget their start within that (EMA55 by a factor e^-74), so the values
    equal those of the whole stored history.
    """
    store = KlineStore(gw.app.pool)
    await _known(store, symbol, interval)
    bars = await store.latest(symbol, interval, limit=limit + INDICATOR_WARMUP_BARS)
    rows = batch(bars)[-limit:]
    source = bars[-1].source if bars else ""
    return [{**v.row(), "source": source} for v in rows]


class SeriesOut(CamelModel):
    symbol: str
    interval: str
    source: str
    live: bool
    bars: int
    first_open_time: datetime
    last_open_time: datetime
    interval_seconds: int
    age_seconds: float
    freshness: str


@router.get("/api/v1/marketdata/series", response_model=list[SeriesOut], tags=["marketdata"])
async def stored_series(gw: Gw) -> Any:
    """Every stored K-line series (at most 500), by symbol and interval: its current
    source (``live`` unless ``replay``), that source's bar count, first and last open
    time, and freshness: ``fresh`` while the newest bar opened less than two intervals
    plus 10 minutes ago, else ``stale`` (``ageSeconds``: how long ago it opened)."""
    return [asdict(s) for s in await series_summaries(gw.app.pool)]


class DayOut(CamelModel):
    day: date
    expected: int
    present: int
    completeness: float


class IntegrityOut(CamelModel):
    symbol: str
    interval: str
    window_start: datetime
    window_end: datetime
    expected: int
    present: int
    completeness: float
    missing: int
    checked_at: datetime
    days: list[DayOut]


@router.get("/api/v1/marketdata/integrity", response_model=list[IntegrityOut], tags=["marketdata"])
async def integrity(gw: Gw) -> Any:
    """The last integrity check (``marketdata.integrity``) of each series: the bars its
    window should hold, those stored traded (not filled), and the same per UTC day."""
    return [
        {**asdict(c), "days": [{**asdict(d), "completeness": d.completeness} for d in c.days]}
        for c in await integrity_checks(gw.app.pool)
    ]
