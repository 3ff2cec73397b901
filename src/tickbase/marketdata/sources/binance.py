"""Binance spot klines (``GET /api/v3/klines``): the "binance" kline source."""

from __future__ import annotations

from typing import Any, Final

import httpx

from tickbase.errors import plural
from tickbase.marketdata.collector import (
    FailurePolicy,
    Kind,
    Kline,
    Request,
    get_json,
    interval_step,
)
from tickbase.marketdata.sources.checks import check_klines
from tickbase.marketdata.sources.wire import (
    HttpSource,
    expect_array,
    json_kind,
    kline_request,
    parse_count,
    parse_field,
    parse_number,
    parse_rows,
    parse_time,
)

__all__ = ["BinanceKlines"]

_BINANCE_MAX_LIMIT: Final = 1000


def _binance_kline(row: Any) -> Kline:
    if not isinstance(row, list):
        raise ValueError(f"is {json_kind(row)}, not an array")
    if len(row) < 11:
        raise ValueError(f"has {plural(len(row), 'field')}, a kline has at least 11")
    return Kline(
        open_time=parse_field("open time", row[0], lambda v: parse_time(v, "ms")),
        open=parse_field("open", row[1], parse_number),
        high=parse_field("high", row[2], parse_number),
        low=parse_field("low", row[3], parse_number),
        close=parse_field("close", row[4], parse_number),
        volume=parse_field("volume", row[5], parse_number),
        close_time=parse_field("close time", row[6], lambda v: parse_time(v, "ms")),
        quote_volume=parse_field("quote volume", row[7], parse_number),
        trade_count=parse_field("trade count", row[8], parse_count),
        taker_buy_base_volume=parse_field("taker buy base volume", row[9], parse_number),
        taker_buy_quote_volume=parse_field("taker buy quote volume", row[10], parse_number),
    )


class BinanceKlines(HttpSource):
    """Binance spot klines (``GET /api/v3/klines``), every Binance field filled.

    The wire format is an array of arrays ``[openTime ms, "open", "high", "low", "close",
    "volume", closeTime ms, "quoteAssetVolume", numberOfTrades, "takerBuyBaseVolume",
    "takerBuyQuoteVolume", "ignore"]``, oldest first.
    """

    name = "binance"
    kind: Kind = "klines"
    schedule = "*/5 * * * *"
    rate_limit = "600/m"

    def __init__(
        self, base_url: str = "https://api.binance.com", *, policy: FailurePolicy | None = None
    ) -> None:
        super().__init__(base_url, policy=policy)

    async def collect(self, client: httpx.AsyncClient, request: Request) -> Any:
        """The raw klines array for ``request`` (a :class:`KlineRequest`); its window, when
        it has one, as Binance's ``startTime``/``endTime`` (open times, ms)."""
        wanted = kline_request(self.name, request)
        params: dict[str, str | int] = {
            "symbol": wanted.symbol,
            "interval": wanted.interval,
            "limit": min(wanted.limit, _BINANCE_MAX_LIMIT),
        }
        if wanted.start_ms is not None:
            params["startTime"] = wanted.start_ms
        if wanted.end_ms is not None:
            params["endTime"] = wanted.end_ms
        url = f"{self.base_url}/api/v3/klines"
        return await get_json(
            client, self.name, url, params=params, timeout=self.policy.request_timeout
        )

    def validate(self, raw: Any, request: Request) -> list[Kline]:
        """The klines, oldest first; :class:`InvalidPayload` refuses the payload whole."""
        wanted = kline_request(self.name, request)
        rows = expect_array(self.name, raw, "klines")
        klines = parse_rows(self.name, rows, _binance_kline)
        return check_klines(self.name, klines, interval_step(wanted.interval))
