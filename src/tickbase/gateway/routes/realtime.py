"""HTTP ``/api/v1/realtime``: whether this process runs the real-time pipeline, and what it
aggregates (the symbols and intervals a ``kline`` WebSocket subscription may name)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from tickbase.gateway.kline_ws import KlineFanout
from tickbase.gateway.routes.deps import ERRORS, Reader
from tickbase.gateway.schemas import CamelModel

router = APIRouter(prefix="/api/v1", responses=ERRORS)


class RealtimeOut(CamelModel):
    """The real-time pipeline of the gateway process that answers."""

    running: bool
    """A pipeline runs in this process: ``kline`` subscriptions are served here."""
    symbols: list[str]
    """The symbols it aggregates (configured, or seen in its trades), sorted."""
    intervals: list[str]
    """Its K-line intervals, as configured (``1m``, ``5m``, ``1h`` by default)."""
    source: str | None
    """Its trade source's name (``replay``, ``binance``); ``None`` when not running."""
    live: bool
    """The source's trade times are now (a live stream, or a replay shifted to now)."""
    max_subscriptions: int
    """``kline`` subscriptions one WebSocket connection may hold."""


@router.get("/realtime", response_model=RealtimeOut, tags=["marketdata"])
async def realtime(request: Request, _: Reader) -> Any:
    """The real-time pipeline of this gateway process (``running: false`` when none runs:
    its ``kline`` channel then answers ``REALTIME_NOT_RUNNING``).

    Example answer: ``{"running": true, "symbols": ["BTCUSDT", "ETHUSDT"],
    "intervals": ["1m", "5m", "1h"], "source": "replay", "live": true,
    "maxSubscriptions": 50}``."""
    klines: KlineFanout = request.app.state.klines
    pipeline = klines.running()
    if pipeline is None:
        return RealtimeOut(
            running=False,
            symbols=[],
            intervals=[],
            source=None,
            live=False,
            max_subscriptions=klines.max_per_connection,
        )
    return RealtimeOut(
        running=True,
        symbols=sorted(pipeline.symbols),
        intervals=list(pipeline.intervals),
        source=pipeline.source.name,
        live=pipeline.source.live,
        max_subscriptions=klines.max_per_connection,
    )


__all__ = ["RealtimeOut", "router"]
