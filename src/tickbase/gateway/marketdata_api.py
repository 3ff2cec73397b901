"""Market-data reads: ``/api/v1/klines``, ``/api/v1/indicators``,
``/api/v1/observations`` and a TradingView UDF datafeed under ``/udf``.

The UDF endpoints speak the wire format of TradingView's charting library
``UDFCompatibleDatafeed`` (``/udf/config``, ``/udf/symbols``, ``/udf/history``,
``/udf/time``): plain JSON, arrays of bar fields, ``{"s": "no_data", "nextTime"}``
when a range holds nothing. They read the stored K-lines; like the rest of the
API they need a token (or a session).
"""

from __future__ import annotations

import time
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from tickbase.gateway.errors import ApiError
from tickbase.gateway.http_api import ERRORS, Gw, current_principal
from tickbase.gateway.schemas import CamelModel
from tickbase.marketdata.indicators import batch
from tickbase.marketdata.store import (
    INTERVAL_PATTERN,
    SERIES_PATTERN,
    SYMBOL_PATTERN,
    KlineStore,
    ObservationStore,
)

# TradingView resolutions and the K-line intervals they read.
RESOLUTIONS = {
    "1": "1m",
    "5": "5m",
    "15": "15m",
    "30": "30m",
    "60": "1h",
    "240": "4h",
    "1D": "1d",
    "D": "1d",
    "1W": "1w",
    "W": "1w",
    "1M": "1M",
    "M": "1M",
}
HISTORY_MAX_BARS = 20_000
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


# ---- TradingView UDF -------------------------------------------------------------


@router.get("/udf/config", tags=["udf"])
async def udf_config() -> dict[str, Any]:
    """What the datafeed supports."""
    return {
        "supported_resolutions": sorted(set(RESOLUTIONS) - {"D", "W", "M"}),
        "supports_search": False,
        "supports_group_request": False,
        "supports_marks": False,
        "supports_timescale_marks": False,
        "supports_time": True,
    }


@router.get("/udf/time", tags=["udf"])
async def udf_time() -> int:
    """The server's time, unix seconds."""
    return int(time.time())


@router.get("/udf/symbols", tags=["udf"])
async def udf_symbols(gw: Gw, symbol: Symbol) -> dict[str, Any]:
    """A symbol's description (its resolutions are the intervals stored)."""
    series = await KlineStore(gw.app.pool).series()
    intervals = {i for s, i in series if s == symbol}
    if not intervals:
        known = sorted({s for s, _ in series})
        raise ApiError(404, "NOT_FOUND", f"unknown symbol {symbol!r}", {"symbols": known})
    resolutions = sorted(
        r for r, i in RESOLUTIONS.items() if i in intervals and r not in ("D", "W", "M")
    )
    return {
        "name": symbol,
        "ticker": symbol,
        "description": symbol,
        "type": "crypto",
        "session": "24x7",
        "timezone": "Etc/UTC",
        "exchange": "tickbase",
        "listed_exchange": "tickbase",
        "minmov": 1,
        "pricescale": 100_000_000,
        "has_intraday": any(i[-1] in "smh" for i in intervals),
        "has_daily": "1d" in intervals,
        "has_weekly_and_monthly": bool({"1w", "1M"} & intervals),
        "supported_resolutions": resolutions,
        "data_status": "endofday",
    }


@router.get("/udf/history", tags=["udf"])
async def udf_history(
    gw: Gw,
    symbol: Symbol,
    resolution: Annotated[str, Query(max_length=8)],
    from_: Annotated[int, Query(alias="from", ge=0, le=2**33)],
    to: Annotated[int, Query(ge=0, le=2**33)],
    countback: Annotated[int | None, Query(ge=1, le=HISTORY_MAX_BARS)] = None,
) -> dict[str, Any]:
    """Bars with ``from <= t < to`` as arrays ``{s, t, o, h, l, c, v}``; ``no_data``
    (with ``nextTime`` when older bars exist) when the range holds none."""
    interval = RESOLUTIONS.get(resolution)
    if interval is None:
        raise ApiError(
            422,
            "VALIDATION_ERROR",
            f"unknown resolution {resolution!r}",
            {"resolutions": sorted(RESOLUTIONS)},
        )
    if to <= from_:
        raise ApiError(422, "VALIDATION_ERROR", "'to' must be after 'from'")
    store = KlineStore(gw.app.pool)
    await _known(store, symbol, interval)
    start = datetime.fromtimestamp(from_, UTC)
    end = datetime.fromtimestamp(to, UTC)
    if countback is not None:
        start = datetime(1970, 1, 1, tzinfo=UTC)  # countback: the N bars before `to`
    bars = await store.window(symbol, interval, start, end, limit=countback or HISTORY_MAX_BARS)
    if not bars:
        # nextTime: where the chart should look instead (the last bar before the range)
        before = await store.last_before(symbol, interval, start)
        reply: dict[str, Any] = {"s": "no_data"}
        if before is not None:
            reply["nextTime"] = int(before.timestamp())
        return reply
    return {
        "s": "ok",
        "t": [int(b.open_time.timestamp()) for b in bars],
        "o": [b.open for b in bars],
        "h": [b.high for b in bars],
        "l": [b.low for b in bars],
        "c": [b.close for b in bars],
        "v": [b.volume for b in bars],
    }
