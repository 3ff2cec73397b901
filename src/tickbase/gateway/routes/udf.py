"""The TradingView UDF datafeed under ``/udf``: ``config``, ``time``, ``symbols``,
``history``.

These routes speak the wire format of TradingView's charting library
``UDFCompatibleDatafeed``, not the rest of the API's: plain JSON with its own
snake_case keys (``supported_resolutions``, ``has_intraday``, ``pricescale``), bar
fields as arrays, ``{"s": "no_data", "nextTime"}`` when a range holds nothing, and
errors as ``{"s": "error", "errmsg": "..."}`` (the library reads ``s``, never the
HTTP status; the status stays meaningful for everyone else: 404 for an unknown
symbol, 422 for a bad parameter). They need a token (or a session) like the rest
of the API; a refused credential is answered by the gateway's own 401.

Symbol info comes from :mod:`tickbase.marketdata.instruments`; resolutions the stored
intervals do not hold are aggregated by :mod:`tickbase.marketdata.resample`.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from tickbase.errors import ResolutionError
from tickbase.gateway.errors import ApiError
from tickbase.gateway.routes.deps import Gw, current_principal
from tickbase.gateway.schemas import ErrorResponse
from tickbase.marketdata.instruments import describe
from tickbase.marketdata.resample import (
    CHART_RESOLUTIONS,
    aggregate,
    is_exact,
    parse_resolution,
    source_interval,
    supported,
)
from tickbase.marketdata.store import SYMBOL_PATTERN, KlineStore

HISTORY_MAX_BARS = 20_000
MAX_TIME = 2**33
"""Unix seconds past this (year 2242) are not a chart's range."""


class UdfErrorOut(BaseModel):
    """UDF's error document."""

    s: Literal["error"]
    errmsg: str


# 401 comes from the gateway's credential check, before any UDF route: its envelope.
UDF_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse},
    404: {"model": UdfErrorOut, "description": "unknown symbol"},
    422: {"model": UdfErrorOut, "description": "a bad parameter or resolution"},
}

router = APIRouter(dependencies=[Depends(current_principal)], tags=["udf"], responses=UDF_ERRORS)


class UdfError(ApiError):
    """An error in UDF's own shape: ``{"s": "error", "errmsg": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status, "UDF_ERROR", message)

    def body(self) -> dict[str, Any]:
        """UDF's error document (what ``UDFCompatibleDatafeed`` reads)."""
        return {"s": "error", "errmsg": self.message}


def _symbol(symbol: str | None) -> str:
    if not symbol:
        raise UdfError(422, "symbol is required")
    if not re.match(SYMBOL_PATTERN, symbol):
        raise UdfError(422, f"invalid symbol {symbol!r}: 1 to 40 letters, digits or _ . : / -")
    return symbol


def _seconds(name: str, value: str | None, *, required: bool = True) -> int | None:
    if value is None or value == "":
        if required:
            raise UdfError(422, f"{name!r} is required (unix seconds)")
        return None
    if not value.isdigit() or int(value) > MAX_TIME:
        raise UdfError(422, f"{name!r} must be unix seconds between 0 and {MAX_TIME}: {value!r}")
    return int(value)


async def _intervals(store: KlineStore, symbol: str) -> set[str]:
    """The stored intervals of ``symbol``; a UDF 404 naming the stored symbols if none."""
    series = await store.series()
    intervals = {i for s, i in series if s == symbol}
    if not intervals:
        known = ", ".join(sorted({s for s, _ in series})) or "none"
        raise UdfError(404, f"unknown symbol {symbol!r} (stored: {known})")
    return intervals


@router.get("/udf/config")
async def udf_config() -> dict[str, Any]:
    """What the datafeed supports (each symbol's own resolutions are in its info)."""
    return {
        "supported_resolutions": list(CHART_RESOLUTIONS),
        "supports_search": False,
        "supports_group_request": False,
        "supports_marks": False,
        "supports_timescale_marks": False,
        "supports_time": True,
    }


@router.get("/udf/time")
async def udf_time() -> int:
    """The server's time, unix seconds."""
    return int(time.time())


@router.get("/udf/symbols")
async def udf_symbols(gw: Gw, symbol: str | None = None) -> dict[str, Any]:
    """A symbol's description: what the instrument is (type, session, timezone, price
    precision) and the resolutions its stored intervals serve, aggregated ones included."""
    name = _symbol(symbol)
    intervals = await _intervals(KlineStore(gw.app.pool), name)
    instrument = await describe(gw.app.pool, name)
    resolutions = supported(intervals)
    return {
        "name": name,
        "ticker": name,
        "description": instrument.description,
        "type": instrument.type,
        "session": instrument.session,
        "timezone": instrument.timezone,
        "exchange": instrument.exchange,
        "listed_exchange": instrument.exchange,
        "minmov": instrument.minmov,
        "pricescale": instrument.pricescale,
        "has_intraday": any(r[-1] not in "DWM" for r in resolutions),
        "has_seconds": any(r.endswith("S") for r in resolutions),
        "has_daily": any(r.endswith("D") for r in resolutions),
        "has_weekly_and_monthly": any(r[-1] in "WM" for r in resolutions),
        "intraday_multipliers": [r for r in resolutions if r.isdigit()],
        "supported_resolutions": resolutions,
        "data_status": "endofday",
    }


@router.get("/udf/history")
async def udf_history(
    gw: Gw,
    symbol: str | None = None,
    resolution: str | None = None,
    from_text: Annotated[str | None, Query(alias="from")] = None,
    to_text: Annotated[str | None, Query(alias="to")] = None,
    countback_text: Annotated[str | None, Query(alias="countback")] = None,
) -> dict[str, Any]:
    """Bars with ``from <= t < to`` as arrays ``{s, t, o, h, l, c, v}``, at a stored
    interval or aggregated from a finer one; ``no_data`` (with ``nextTime`` when older
    bars exist) when the range holds none.

    Parameters are taken as text and checked here, so that a bad one is answered in
    UDF's error shape rather than the API's validation envelope.
    """
    name = _symbol(symbol)
    if not resolution:
        raise UdfError(422, "resolution is required")
    try:
        target = parse_resolution(resolution)
    except ResolutionError as exc:
        raise UdfError(422, str(exc)) from None
    start_s = _seconds("from", from_text)
    end_s = _seconds("to", to_text)
    assert start_s is not None and end_s is not None
    countback = _seconds("countback", countback_text, required=False)
    if countback is not None and not 1 <= countback <= HISTORY_MAX_BARS:
        raise UdfError(422, f"'countback' must be 1 to {HISTORY_MAX_BARS}: {countback}")
    if end_s <= start_s:
        raise UdfError(422, f"'to' ({end_s}) must be after 'from' ({start_s})")
    store = KlineStore(gw.app.pool)
    try:
        interval = source_interval(target, await _intervals(store, name))
    except ResolutionError as exc:
        raise UdfError(422, f"{name}: {exc}") from None
    start = datetime.fromtimestamp(start_s, UTC)
    end = datetime.fromtimestamp(end_s, UTC)
    if countback is not None:
        start = datetime(1970, 1, 1, tzinfo=UTC)  # countback: the N bars before `to`
    limit = countback or HISTORY_MAX_BARS
    bars: list[Any]
    if is_exact(interval, target):
        bars = await store.window(name, interval, start, end, limit=limit)
    else:
        bars = await aggregate(gw.app.pool, name, interval, target, start, end, limit=limit)
    if not bars:
        # nextTime: where the chart should look instead (the last bar before the range)
        before = await store.last_before(name, interval, start)
        reply: dict[str, Any] = {"s": "no_data"}
        if before is not None:
            reply["nextTime"] = int(target.bucket(before).timestamp())
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
