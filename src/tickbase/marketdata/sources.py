"""The concrete market-data sources: one :class:`~tickbase.marketdata.collector.Source` per wire format.

- :class:`BinanceKlines` ("binance", klines): Binance ``GET /api/v3/klines``;
- :class:`CoinGeckoOhlc` ("coingecko", klines): CoinGecko ``GET /coins/{id}/ohlc``;
- :class:`FearGreedIndex` ("alternative.me", sentiment): ``GET /fng/``;
- :class:`FredObservations` ("fred", macro): ``GET /fred/series/observations`` (API key);
- :class:`GlassnodeMetric` ("glassnode", onchain): ``GET /v1/metrics/{metric}`` (API key);

(The replay source, not live, is :mod:`tickbase.marketdata.replay`.)

Every source refuses a payload whole (:class:`InvalidPayload`, naming the source, the row
and the problem): one bad row and nothing of it is stored. The kline checks are one
function, :func:`check_klines`, shared by every kline source; times are parsed by one
function, :func:`parse_time`. API keys travel only in query strings, which
:func:`~tickbase.marketdata.collector.get_json` keeps out of every message.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from types import MappingProxyType
from typing import Any, Final, Literal, TypeVar

import httpx

from tickbase.errors import InvalidPayload, SourceSkipped, plural
from tickbase.marketdata.collector import (
    FailurePolicy,
    Kind,
    Kline,
    KlineRequest,
    Observation,
    Request,
    SeriesRequest,
    Source,
    get_json,
    interval_step,
)

__all__ = [
    "COINGECKO_OHLC_DAYS",
    "DEFAULT_COIN_IDS",
    "BinanceKlines",
    "CoinGeckoOhlc",
    "FearGreedIndex",
    "FredObservations",
    "GlassnodeMetric",
    "check_klines",
    "coingecko_candle_seconds",
    "coingecko_days",
    "parse_number",
    "parse_time",
]

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MS: Final = timedelta(milliseconds=1)

T = TypeVar("T")

# ---- shared parsing: one implementation of times, numbers and the kline checks ----------

TimeUnit = Literal["ms", "s", "date"]


def parse_time(value: Any, unit: TimeUnit) -> datetime:
    """A timezone-aware UTC time from a wire value; :class:`ValueError` says what is wrong.

    ``"ms"``/``"s"``: a whole count of milliseconds/seconds since the Unix epoch, as a JSON
    number or a string of digits (``1551157200``, ``"1551157200"``). ``"date"``: an ISO
    ``YYYY-MM-DD`` day, taken as 00:00 UTC.
    """
    if unit == "date":
        if not isinstance(value, str):
            raise ValueError(f"date {value!r} is not a string")
        try:
            day = date.fromisoformat(value)
        except ValueError:
            raise ValueError(f"date {value!r} is not YYYY-MM-DD") from None
        return datetime(day.year, day.month, day.day, tzinfo=UTC)
    what = "milliseconds" if unit == "ms" else "seconds"
    count: int
    if isinstance(value, bool):
        raise ValueError(f"time {value!r} is not a whole number of {what}")
    if isinstance(value, int):
        count = value
    elif (isinstance(value, float) and value.is_integer()) or (
        isinstance(value, str) and value.strip().removeprefix("-").isdigit()
    ):
        count = int(value)
    else:
        raise ValueError(f"time {value!r} is not a whole number of {what}")
    try:
        return EPOCH + (timedelta(milliseconds=count) if unit == "ms" else timedelta(seconds=count))
    except OverflowError:
        raise ValueError(f"time {value!r} ({what}) is out of range") from None


def parse_number(value: Any) -> float:
    """A finite float from a JSON number or a numeric string; :class:`ValueError` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{value!r} is not a number")
    try:
        number = float(value)
    except (ValueError, OverflowError):
        raise ValueError(f"{value!r} is not a number") from None
    if not math.isfinite(number):
        raise ValueError(f"{value!r} is not a finite number")
    return number


def _parse_count(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    raise ValueError(f"{value!r} is not a whole number")


def _field(name: str, value: Any, parse: Callable[[Any], T]) -> T:
    try:
        return parse(value)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


def _json_kind(value: Any) -> str:
    """How JSON would call ``value`` ("an object", "a string", ...)."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "null" if value is None else type(value).__name__


def _stamp(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


def _duration(seconds: int) -> str:
    for unit, size in (("d", 86_400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def check_klines(source: str, klines: Sequence[Kline], step: int | None) -> list[Kline]:
    """``klines`` as a list if every bar is sound; else :class:`InvalidPayload` for the first bad one.

    The one definition of a garbage bar for every kline source: a non-finite number,
    a price that is not positive, a negative volume (or count), a high below the low or
    below the open/close, a low above the open/close, an open time that does not come
    strictly after the previous one (out of order or duplicated), or, with ``step``
    seconds given, an open time not a whole number of steps after the previous one.
    A flat bar (open = high = low = close) and a zero volume are valid. The message reads
    ``"<source>: row <i>: <problem>"``; ``i`` is the row's index in the payload.
    """
    previous: datetime | None = None
    for index, kline in enumerate(klines):
        problem = _kline_problem(kline, previous, step)
        if problem is not None:
            raise InvalidPayload(f"{source}: row {index}: {problem}")
        previous = kline.open_time
    return list(klines)


def _kline_problem(kline: Kline, previous: datetime | None, step: int | None) -> str | None:
    numbers: dict[str, float | int | None] = {
        "open": kline.open,
        "high": kline.high,
        "low": kline.low,
        "close": kline.close,
        "volume": kline.volume,
        "quote volume": kline.quote_volume,
        "trade count": kline.trade_count,
        "taker buy base volume": kline.taker_buy_base_volume,
        "taker buy quote volume": kline.taker_buy_quote_volume,
    }
    for name, value in numbers.items():
        if value is None:
            continue
        if not math.isfinite(value):
            return f"{name} {value!r} is not a finite number"
        if name in ("open", "high", "low", "close"):
            if value <= 0:
                return f"{name} {value!r} is not positive"
        elif value < 0:
            return f"{name} {value!r} is negative"
    if kline.open_time.utcoffset() != timedelta(0):
        return f"open time {kline.open_time.isoformat()} is not in UTC"
    if kline.high < kline.low:
        return f"high {kline.high!r} is below low {kline.low!r}"
    if kline.high < max(kline.open, kline.close):
        return f"high {kline.high!r} is below max(open, close) {max(kline.open, kline.close)!r}"
    if kline.low > min(kline.open, kline.close):
        return f"low {kline.low!r} is above min(open, close) {min(kline.open, kline.close)!r}"
    if previous is not None:
        when, before = _stamp(kline.open_time), _stamp(previous)
        if kline.open_time == previous:
            return f"open time {when} duplicates the previous row's"
        if kline.open_time < previous:
            return f"open time {when} is before the previous row's {before} (out of order)"
        if step is not None and (kline.open_time - previous) % timedelta(seconds=step):
            gap = (kline.open_time - previous).total_seconds()
            return (
                f"open time {when} is {gap:g} s after the previous row's {before}, "
                f"not a multiple of the interval ({step} s)"
            )
    return None


def _check_order(source: str, times: Sequence[datetime]) -> bool:
    """Refuse duplicated or unordered times; True when they run newest first."""
    newest_first: bool | None = None
    for index in range(1, len(times)):
        here, before = times[index], times[index - 1]
        if here == before:
            raise InvalidPayload(
                f"{source}: row {index}: time {_stamp(here)} duplicates row {index - 1}'s"
            )
        down = here < before
        if newest_first is None:
            newest_first = down
        elif down != newest_first:
            order = "newest-first" if newest_first else "oldest-first"
            raise InvalidPayload(
                f"{source}: row {index}: time {_stamp(here)} breaks the {order} order "
                f"(row {index - 1} is {_stamp(before)})"
            )
    return newest_first is True


def _rows(source: str, raw: Any, what: str) -> list[Any]:
    if not isinstance(raw, list):
        raise InvalidPayload(f"{source}: payload is {_json_kind(raw)}, not an array of {what}")
    return raw


def _object(source: str, raw: Any, what: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise InvalidPayload(f"{source}: payload is {_json_kind(raw)}, not {what}")
    return raw


def _parse_rows(source: str, rows: Sequence[Any], parse: Callable[[Any], T]) -> list[T]:
    parsed: list[T] = []
    for index, row in enumerate(rows):
        try:
            parsed.append(parse(row))
        except ValueError as exc:
            raise InvalidPayload(f"{source}: row {index}: {exc}") from None
    return parsed


def _kline_request(source: str, request: Request) -> KlineRequest:
    if not isinstance(request, KlineRequest):
        raise TypeError(f"{source} serves klines: expected a KlineRequest, got {request!r}")
    return request


def _series_request(source: str, request: Request) -> SeriesRequest:
    if not isinstance(request, SeriesRequest):
        raise TypeError(f"{source} serves a series: expected a SeriesRequest, got {request!r}")
    return request


class _HttpSource(Source):
    """A source behind one base URL, with an optional per-instance failure policy."""

    def __init__(self, base_url: str, *, policy: FailurePolicy | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        if policy is not None:
            self.policy = policy

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r})"


# ---- Binance ----------------------------------------------------------------------------

_BINANCE_MAX_LIMIT: Final = 1000


def _binance_kline(row: Any) -> Kline:
    if not isinstance(row, list):
        raise ValueError(f"is {_json_kind(row)}, not an array")
    if len(row) < 11:
        raise ValueError(f"has {plural(len(row), 'field')}, a kline has at least 11")
    return Kline(
        open_time=_field("open time", row[0], lambda v: parse_time(v, "ms")),
        open=_field("open", row[1], parse_number),
        high=_field("high", row[2], parse_number),
        low=_field("low", row[3], parse_number),
        close=_field("close", row[4], parse_number),
        volume=_field("volume", row[5], parse_number),
        close_time=_field("close time", row[6], lambda v: parse_time(v, "ms")),
        quote_volume=_field("quote volume", row[7], parse_number),
        trade_count=_field("trade count", row[8], _parse_count),
        taker_buy_base_volume=_field("taker buy base volume", row[9], parse_number),
        taker_buy_quote_volume=_field("taker buy quote volume", row[10], parse_number),
    )


class BinanceKlines(_HttpSource):
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
        """The raw klines array for ``request`` (a :class:`KlineRequest`)."""
        wanted = _kline_request(self.name, request)
        params = {
            "symbol": wanted.symbol,
            "interval": wanted.interval,
            "limit": min(wanted.limit, _BINANCE_MAX_LIMIT),
        }
        url = f"{self.base_url}/api/v3/klines"
        return await get_json(
            client, self.name, url, params=params, timeout=self.policy.request_timeout
        )

    def validate(self, raw: Any, request: Request) -> list[Kline]:
        """The klines, oldest first; :class:`InvalidPayload` refuses the payload whole."""
        wanted = _kline_request(self.name, request)
        rows = _rows(self.name, raw, "klines")
        klines = _parse_rows(self.name, rows, _binance_kline)
        return check_klines(self.name, klines, interval_step(wanted.interval))


# ---- CoinGecko ------------------------------------------------------------------------

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
        raise ValueError(f"is {_json_kind(row)}, not an array")
    if len(row) < 5:
        raise ValueError(f"has {plural(len(row), 'field')}, an OHLC candle has 5")
    return Kline(
        open_time=_field("time", row[0], lambda v: parse_time(v, "ms")),
        open=_field("open", row[1], parse_number),
        high=_field("high", row[2], parse_number),
        low=_field("low", row[3], parse_number),
        close=_field("close", row[4], parse_number),
        volume=0.0,
    )


class CoinGeckoOhlc(_HttpSource):
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
        wanted = _kline_request(self.name, request)
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
        wanted = _kline_request(self.name, request)
        step = interval_step(wanted.interval)
        if step is None:
            raise InvalidPayload(
                f"{self.name}: interval {wanted.interval} has no fixed length to group candles into"
            )
        rows = _rows(self.name, raw, "OHLC candles")
        candles = check_klines(self.name, _parse_rows(self.name, rows, _coingecko_candle), None)
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


# ---- alternative.me Fear & Greed -----------------------------------------------------

FEAR_GREED_SERIES: Final = "fear_greed"


def _fear_greed_entry(entry: Any) -> Observation:
    if not isinstance(entry, dict):
        raise ValueError(f"is {_json_kind(entry)}, not an object")
    raw_value = entry.get("value")
    value = _field("value", raw_value, _parse_count)
    if not 0 <= value <= 100:
        raise ValueError(f"value {raw_value!r} is outside 0..100")
    label = entry.get("value_classification")
    if not isinstance(label, str) or not label:
        raise ValueError(f"value_classification {label!r} is not a non-empty string")
    when = _field("timestamp", entry.get("timestamp"), lambda v: parse_time(v, "s"))
    return Observation(FEAR_GREED_SERIES, when, float(value), label)


class FearGreedIndex(_HttpSource):
    """The alternative.me crypto Fear & Greed Index (``GET /fng/``), series ``fear_greed``.

    The wire format is ``{"name": ..., "data": [{"value": "40", "value_classification":
    "Fear", "timestamp": "1551157200", ...}], "metadata": {"error": null}}``, newest first.
    Each value becomes an :class:`Observation` with the classification as its label.
    """

    name = "alternative.me"
    kind: Kind = "sentiment"
    schedule = "0 * * * *"
    rate_limit = "60/m"

    def __init__(
        self, base_url: str = "https://api.alternative.me", *, policy: FailurePolicy | None = None
    ) -> None:
        super().__init__(base_url, policy=policy)

    async def collect(self, client: httpx.AsyncClient, request: Request) -> Any:
        """The raw index document for the last ``request.limit`` days."""
        params = {"limit": request.limit, "format": "json"}
        return await get_json(
            client,
            self.name,
            f"{self.base_url}/fng/",
            params=params,
            timeout=self.policy.request_timeout,
        )

    def validate(self, raw: Any, request: Request) -> list[Observation]:
        """Index values oldest first; :class:`InvalidPayload` refuses the document whole."""
        document = _object(self.name, raw, "the index document (an object)")
        metadata = document.get("metadata")
        if isinstance(metadata, dict) and metadata.get("error") is not None:
            raise InvalidPayload(f"{self.name}: the API reported an error: {metadata['error']!r}")
        data = document.get("data")
        if not isinstance(data, list):
            raise InvalidPayload(f"{self.name}: 'data' is {_json_kind(data)}, not an array")
        observations = _parse_rows(self.name, data, _fear_greed_entry)
        newest_first = _check_order(self.name, [o.observed_at for o in observations])
        return observations[::-1] if newest_first else observations


# ---- FRED --------------------------------------------------------------------------------


def _fred_value(value: Any) -> float | None:
    if value == ".":
        return None  # FRED's missing value; cleaning fills it
    return parse_number(value)


class FredObservations(_HttpSource):
    """FRED series observations (``GET /fred/series/observations``); needs an API key.

    The wire format is ``{"observations": [{"date": "2024-01-02", "value": "3.95", ...}]}``,
    asked newest first; FRED's missing value ``"."`` becomes ``value=None``. The series
    is the FRED series id. Without an API key the source is skipped, no request made.
    """

    name = "fred"
    kind: Kind = "macro"
    schedule = "0 3 * * *"
    rate_limit = "120/m"

    def __init__(
        self,
        api_key: str | None,
        base_url: str = "https://api.stlouisfed.org",
        *,
        policy: FailurePolicy | None = None,
    ) -> None:
        super().__init__(base_url, policy=policy)
        self._api_key = api_key

    async def collect(self, client: httpx.AsyncClient, request: Request) -> Any:
        """The raw observations document for ``request`` (a :class:`SeriesRequest`)."""
        wanted = _series_request(self.name, request)
        if not self._api_key:
            raise SourceSkipped("fred: no API key (set TICKBASE_FRED_API_KEY); skipped")
        params = {
            "series_id": wanted.series,
            "api_key": self._api_key,
            "file_type": "json",
            "sort_order": "desc",
            "limit": wanted.limit,
        }
        url = f"{self.base_url}/fred/series/observations"
        return await get_json(
            client, self.name, url, params=params, timeout=self.policy.request_timeout
        )

    def validate(self, raw: Any, request: Request) -> list[Observation]:
        """Observations oldest first; :class:`InvalidPayload` refuses the document whole."""
        wanted = _series_request(self.name, request)
        document = _object(self.name, raw, "an observations document (an object)")
        if "error_message" in document:
            raise InvalidPayload(
                f"{self.name}: the API reported an error: {document['error_message']!r}"
            )
        rows = document.get("observations")
        if not isinstance(rows, list):
            raise InvalidPayload(f"{self.name}: 'observations' is {_json_kind(rows)}, not an array")

        def parse(row: Any) -> Observation:
            if not isinstance(row, dict):
                raise ValueError(f"is {_json_kind(row)}, not an object")
            when = _field("date", row.get("date"), lambda v: parse_time(v, "date"))
            return Observation(wanted.series, when, _field("value", row.get("value"), _fred_value))

        observations = _parse_rows(self.name, rows, parse)
        newest_first = _check_order(self.name, [o.observed_at for o in observations])
        return observations[::-1] if newest_first else observations


# ---- Glassnode -------------------------------------------------------------------------


def _glassnode_point(point: Any) -> tuple[datetime, float | None]:
    if not isinstance(point, dict):
        raise ValueError(f"is {_json_kind(point)}, not an object")
    if "t" not in point or "v" not in point:
        raise ValueError(f"has keys {sorted(point)}, a point needs 't' and 'v'")
    when = _field("t", point["t"], lambda v: parse_time(v, "s"))
    value = None if point["v"] is None else _field("v", point["v"], parse_number)
    return when, value


class GlassnodeMetric(_HttpSource):
    """One Glassnode metric of one asset (``GET /v1/metrics/{metric}``); needs an API key.

    ``SeriesRequest.series`` is the metric path (``"market/mvrv_z_score"``); the
    observations' series is ``"<asset>:<metric>"``. The wire format is ``[{"t": unix
    seconds, "v": number or null}, ...]`` oldest first; ``null`` becomes ``value=None``.
    Daily resolution (``i=24h``). Without an API key the source is skipped, no request made.
    """

    name = "glassnode"
    kind: Kind = "onchain"
    schedule = "0 * * * *"
    rate_limit = "10/m"

    def __init__(
        self,
        api_key: str | None,
        asset: str = "BTC",
        base_url: str = "https://api.glassnode.com",
        *,
        policy: FailurePolicy | None = None,
    ) -> None:
        super().__init__(base_url, policy=policy)
        self._api_key = api_key
        self.asset = asset

    async def collect(self, client: httpx.AsyncClient, request: Request) -> Any:
        """The raw point array of the metric ``request.series``."""
        wanted = _series_request(self.name, request)
        if not self._api_key:
            raise SourceSkipped("glassnode: no API key (set TICKBASE_GLASSNODE_API_KEY); skipped")
        url = f"{self.base_url}/v1/metrics/{wanted.series.strip('/')}"
        params = {"a": self.asset, "i": "24h", "api_key": self._api_key}
        return await get_json(
            client, self.name, url, params=params, timeout=self.policy.request_timeout
        )

    def validate(self, raw: Any, request: Request) -> list[Observation]:
        """The last ``limit`` points, oldest first; :class:`InvalidPayload` refuses the array whole."""
        wanted = _series_request(self.name, request)
        points = _parse_rows(self.name, _rows(self.name, raw, "points"), _glassnode_point)
        if _check_order(self.name, [when for when, _ in points]):
            points.reverse()
        series = f"{self.asset}:{wanted.series.strip('/')}"
        observations = [Observation(series, when, value) for when, value in points]
        return observations[-wanted.limit :] if wanted.limit > 0 else []
