"""CoinGecko OHLC candles (``GET /coins/{id}/ohlc``): the "coingecko" kline source."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any, Final

import httpx

from tickbase.errors import InvalidPayload, SourceSkipped, plural
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
    EPOCH,
    HttpSource,
    expect_array,
    json_kind,
    kline_request,
    parse_field,
    parse_number,
    parse_rows,
    parse_time,
)

__all__ = [
    "COINGECKO_OHLC_DAYS",
    "DEFAULT_COIN_IDS",
    "CoinGeckoOhlc",
    "coingecko_candle_seconds",
    "coingecko_days",
]

DEFAULT_COIN_IDS: Final[Mapping[str, str]] = MappingProxyType(
    {"BTCUSDT": "bitcoin", "ETHUSDT": "ethereum"}
)
"""The CoinGecko coin id of each symbol :class:`CoinGeckoOhlc` serves by default."""

COINGECKO_OHLC_DAYS: Final = (1, 7, 14, 30, 90, 180, 365)
"""The ``days`` values CoinGecko documents for ``/coins/{id}/ohlc`` (``max`` is not used)."""


def coingecko_candle_seconds(days: int) -> int:
    """CoinGecko's automatic OHLC candle size for ``days``: 1–2 → 30 min, 3–30 → 4 h, 31+ → 4 d."""
    if days <= 2:
        return 1800
    if days <= 30:
        return 4 * 3600
    return 4 * 86_400


def coingecko_days(interval: str, limit: int) -> int | None:
    """The ``days`` to ask CoinGecko for ``limit`` bars of ``interval``; ``None`` if none fits.

    Only ``days`` whose candle size divides the interval can make its bars. Of those, the
    smallest that covers ``limit + 1`` bars (one spare: a partial group at the edge is
    dropped); when none covers it, the largest (fewer bars than asked, but whole ones).
    """
    step = interval_step(interval)
    if step is None:
        return None
    usable = [d for d in COINGECKO_OHLC_DAYS if step % coingecko_candle_seconds(d) == 0]
    if not usable:
        return None
    needed = math.ceil(step * (limit + 1) / 86_400)
    covering = [d for d in usable if d >= needed]
    return covering[0] if covering else usable[-1]


def _coingecko_candle(row: Any) -> Kline:
    """A candle stamped (for now) with its close time, as CoinGecko sends it."""
    if not isinstance(row, list):
        raise ValueError(f"is {json_kind(row)}, not an array")
    if len(row) < 5:
        raise ValueError(f"has {plural(len(row), 'field')}, an OHLC candle has 5")
    return Kline(
        open_time=parse_field("time", row[0], lambda v: parse_time(v, "ms")),
        open=parse_field("open", row[1], parse_number),
        high=parse_field("high", row[2], parse_number),
        low=parse_field("low", row[3], parse_number),
        close=parse_field("close", row[4], parse_number),
        volume=0.0,
    )


class CoinGeckoOhlc(HttpSource):
    """CoinGecko OHLC candles (``GET /coins/{id}/ohlc``) aggregated into the requested interval.

    The wire format is ``[[ms, open, high, low, close], ...]`` with the candle's *close*
    time; the candle size follows ``days`` (see :func:`coingecko_candle_seconds`), chosen
    by :func:`coingecko_days`. Candles are grouped into whole interval bars on the epoch
    grid (open of the first, highest high, lowest low, close of the last); an incomplete
    group is dropped. The endpoint has no volume: ``volume`` is 0.0 and the optional
    fields are ``None``. A symbol without a coin id, or an interval no candle size
    divides, raises :class:`SourceSkipped` before any request.
    """

    name = "coingecko"
    kind: Kind = "klines"
    schedule = "*/5 * * * *"
    rate_limit = "30/m"

    def __init__(
        self,
        base_url: str = "https://api.coingecko.com/api/v3",
        coin_ids: Mapping[str, str] | None = None,
        *,
        policy: FailurePolicy | None = None,
    ) -> None:
        super().__init__(base_url, policy=policy)
        self.coin_ids: Mapping[str, str] = dict(DEFAULT_COIN_IDS if coin_ids is None else coin_ids)

    async def collect(self, client: httpx.AsyncClient, request: Request) -> Any:
        """The raw candle array for ``request`` (a :class:`KlineRequest`)."""
        wanted = kline_request(self.name, request)
        coin = self.coin_ids.get(wanted.symbol)
        if coin is None:
            raise SourceSkipped(f"{self.name}: no coin id for symbol {wanted.symbol}; skipped")
        days = coingecko_days(wanted.interval, wanted.limit)
        if days is None:
            raise SourceSkipped(
                f"{self.name}: no OHLC candle size (30m, 4h, 4d) divides interval "
                f"{wanted.interval}; skipped"
            )
        url = f"{self.base_url}/coins/{coin}/ohlc"
        params = {"vs_currency": "usd", "days": days}
        return await get_json(
            client, self.name, url, params=params, timeout=self.policy.request_timeout
        )

    def validate(self, raw: Any, request: Request) -> list[Kline]:
        """Whole bars of the requested interval, oldest first (at most ``limit``)."""
        wanted = kline_request(self.name, request)
        step = interval_step(wanted.interval)
        if step is None:
            raise InvalidPayload(
                f"{self.name}: interval {wanted.interval} has no fixed length to group candles into"
            )
        rows = expect_array(self.name, raw, "OHLC candles")
        candles = check_klines(self.name, parse_rows(self.name, rows, _coingecko_candle), None)
        if len(candles) >= 2:
            gaps = (b.open_time - a.open_time for a, b in itertools.pairwise(candles))
            spacing = int(min(gaps).total_seconds())
        else:
            days = coingecko_days(wanted.interval, wanted.limit)
            spacing = coingecko_candle_seconds(days if days is not None else 1)
        if spacing <= 0 or step % spacing:
            raise InvalidPayload(
                f"{self.name}: candles are {_duration(spacing)} apart, which does not divide "
                f"the interval {wanted.interval}"
            )
        # Candles are stamped with their close; a candle opens one spacing earlier.
        opened = [replace(c, open_time=c.open_time - timedelta(seconds=spacing)) for c in candles]
        check_klines(self.name, opened, spacing)
        bars = _group(opened, spacing, step)
        return bars[-wanted.limit :] if wanted.limit > 0 else []


def _group(candles: Sequence[Kline], spacing: int, step: int) -> list[Kline]:
    """Whole ``step``-second bars from consecutive ``spacing``-second candles."""
    if spacing == step:
        return list(candles)
    per_bar = step // spacing
    width = timedelta(seconds=step)
    groups: dict[datetime, list[Kline]] = {}
    for candle in candles:
        start = candle.open_time - (candle.open_time - EPOCH) % width
        groups.setdefault(start, []).append(candle)
    bars: list[Kline] = []
    for start, members in groups.items():
        if len(members) != per_bar or members[0].open_time != start:
            continue  # an incomplete group: the edges of the window, or a missing candle
        bars.append(
            Kline(
                open_time=start,
                open=members[0].open,
                high=max(m.high for m in members),
                low=min(m.low for m in members),
                close=members[-1].close,
                volume=0.0,
            )
        )
    return bars


def _duration(seconds: int) -> str:
    for unit, size in (("d", 86_400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
