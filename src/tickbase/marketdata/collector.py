"""Collectors: ``collect`` → ``validate`` → ``store``, with a failure policy and a fallback chain.

A :class:`Source` knows one wire format: :meth:`Source.collect` fetches the raw
payload (HTTP through httpx, mapped to the failure kinds below) and
:meth:`Source.validate` turns it into records or refuses it whole
(:class:`InvalidPayload`). :class:`Collector` runs a chain of sources under each
source's :class:`FailurePolicy`:

- HTTP 429 → wait ``Retry-After`` (else 60 s) and try again;
- timeout → up to 3 tries, 2 s apart;
- still failing (or 5xx, refused connection, garbage) → the next source;
- every source down → the last cached value, marked stale;
- nothing cached → the kind's default (fear-and-greed: 50), when it has one.

Every step lands in :attr:`Collection.steps`, which the collecting task keeps as
its result: which source served and why each other one did not.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import httpx

from tickbase.errors import (
    InvalidPayload,
    RateLimited,
    SourceError,
    SourceSkipped,
    SourceTimeout,
    SourceUnavailable,
)
from tickbase.marketdata.bars import Bar
from tickbase.queue.limits import RateLimit

logger = logging.getLogger("tickbase.marketdata")
# httpx logs every request URL at INFO; FRED and Glassnode keys travel in the query.
logging.getLogger("httpx").setLevel(logging.WARNING)

Kind = Literal["klines", "sentiment", "macro", "onchain"]


# ---- what a source hands back ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Kline(Bar):
    """A :class:`~tickbase.marketdata.bars.Bar` with Binance's other fields; the optional
    ones are ``None`` where a source lacks them."""

    close_time: datetime | None = None
    quote_volume: float | None = None
    trade_count: int | None = None
    taker_buy_base_volume: float | None = None
    taker_buy_quote_volume: float | None = None
    is_filled: bool = False
    """Not traded: a forward-filled bar standing in for a missing one (see cleaning)."""


@dataclass(frozen=True, slots=True)
class Observation:
    """One value of a non-price series (sentiment, macro, on-chain) at a time.

    ``value`` is ``None`` where the source reported a missing value (FRED's ``"."``,
    Glassnode's ``null``); cleaning fills it by the kind's rule and sets ``is_filled``.
    """

    series: str
    observed_at: datetime
    value: float | None
    label: str | None = None
    is_filled: bool = False


@dataclass(frozen=True, slots=True)
class KlineRequest:
    """The last ``limit`` bars of one series; with ``start_ms``/``end_ms`` (epoch ms, both
    inclusive, on open times) at most ``limit`` bars of that window, oldest first (sources
    that cannot ask for a window serve their latest bars)."""

    symbol: str
    interval: str
    limit: int = 100
    start_ms: int | None = None
    end_ms: int | None = None


@dataclass(frozen=True, slots=True)
class SeriesRequest:
    """The recent observations of one named series (FRED series id, Glassnode metric, ...)."""

    series: str
    limit: int = 100


Request = KlineRequest | SeriesRequest


# ---- failure kinds -----------------------------------------------------------------


# ---- the source interface -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FailurePolicy:
    """How a source's failures are handled (the reference document's values by default)."""

    retry_after_default: float = 60.0
    """Seconds to wait after a 429 without a ``Retry-After``."""
    retry_after_max: float = 300.0
    """A longer ``Retry-After`` is not waited for: the next source is asked instead."""
    rate_limit_retries: int = 1
    """How many times a 429 is waited out before moving on."""
    timeout_tries: int = 3
    """Tries when the source times out."""
    timeout_spacing: float = 2.0
    """Seconds between those tries."""
    request_timeout: float = 10.0
    """Seconds one request may take."""


class Source(ABC):
    """One data source speaking one wire format.

    Subclasses set ``name`` (stored as the data's ``source``), ``kind``, ``schedule``
    (the cron of its default collection) and ``rate_limit`` (most requests per
    window, ``"1200/m"``), and implement :meth:`collect` and :meth:`validate`.
    """

    name: str
    kind: Kind
    schedule: str = "*/5 * * * *"
    rate_limit: str | None = None
    policy: FailurePolicy = FailurePolicy()
    live: bool = True
    """False for the replay source: serves recorded data, never the market's."""

    @abstractmethod
    async def collect(self, client: httpx.AsyncClient, request: Request) -> Any:
        """Fetch the raw payload; raise a :class:`SourceError` subclass on failure."""

    @abstractmethod
    def validate(self, raw: Any, request: Request) -> list[Kline] | list[Observation]:
        """Records from the raw payload, oldest first; :class:`InvalidPayload` refuses it whole."""


async def get_json(
    client: httpx.AsyncClient,
    source: str,
    url: str,
    *,
    params: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> Any:
    """GET ``url`` and decode JSON, mapping every failure to a :class:`SourceError`.

    Messages name the source and the path only: query strings may hold API keys.
    """
    path = httpx.URL(url).path
    try:
        response = await client.get(url, params=params, headers=headers, timeout=timeout)
    except httpx.TimeoutException:
        raise SourceTimeout(f"{source}: no answer from {path} within {timeout:g} s") from None
    except httpx.HTTPError as exc:
        raise SourceUnavailable(f"{source}: {path} unreachable ({type(exc).__name__})") from None
    if response.status_code == 429:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        told = f"Retry-After {retry_after:g} s" if retry_after is not None else "no Retry-After"
        raise RateLimited(f"{source}: HTTP 429 from {path} ({told})", retry_after)
    if response.status_code != 200:
        raise SourceUnavailable(f"{source}: HTTP {response.status_code} from {path}")
    try:
        return response.json()
    except ValueError:
        kind = response.headers.get("content-type", "unknown content type").split(";")[0]
        head = response.text[:40].strip().replace("\n", " ")
        raise InvalidPayload(f"{source}: {path} answered {kind}, not JSON ({head!r}...)") from None


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta seconds or an HTTP date), ``None`` if unusable."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def interval_seconds(interval: str) -> int:
    """Length of a fixed-length interval (``"5m"`` → 300); months have none (ValueError)."""
    count, unit = interval[:-1], interval[-1:]
    if unit not in _UNIT_SECONDS or not count.isdigit() or int(count) < 1:
        raise ValueError(
            f"interval {interval!r} has no fixed length: use a count and one of s, m, h, d, w"
        )
    return int(count) * _UNIT_SECONDS[unit]


def interval_step(interval: str) -> int | None:
    """Seconds of a kline interval, ``None`` for months (``"1M"``: no fixed length).

    Any other interval :func:`interval_seconds` does not know raises :class:`ValueError`.
    """
    if interval.endswith("M") and interval[:-1].isdigit():
        return None
    return interval_seconds(interval)


# ---- the chain ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Step:
    """One thing the collector did: a source's answer, a wait, a fallback."""

    source: str
    outcome: str
    """``served``, ``rate_limited``, ``timeout``, ``unavailable``, ``invalid``, ``skipped``,
    ``failed``, ``stale`` (the cached value was served) or ``default``."""
    reason: str | None = None
    waited: float = 0.0
    """Seconds waited after this step before the next try."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (kept in the collecting task's result)."""
        out: dict[str, Any] = {"source": self.source, "outcome": self.outcome}
        if self.reason is not None:
            out["reason"] = self.reason
        if self.waited:
            out["waited"] = round(self.waited, 3)
        return out


@dataclass(slots=True)
class Collection:
    """What a collection produced, and how.

    ``served_by`` is a source's name, ``"cache"`` (every source down: the last cached
    value, ``stale``), ``"default"`` (nothing cached either) or ``None`` (nothing at all).
    ``records`` are the validated records of the source that served (empty otherwise);
    ``value`` is the cached value or the default.
    """

    served_by: str | None = None
    records: Sequence[Kline | Observation] = ()
    value: Any = None
    stale: bool = False
    live: bool = True
    steps: list[Step] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary for the task's result."""
        return {
            "served_by": self.served_by,
            "stale": self.stale,
            "live": self.live,
            "records": len(self.records),
            "steps": [step.to_dict() for step in self.steps],
        }


class SourceLimiter:
    """Each source's declared rate limit, in this process (a sliding window of start times)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._starts: dict[str, list[float]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._clock = clock

    async def acquire(self, source: Source) -> float:
        """Wait until ``source`` may be asked again; return the seconds waited."""
        if source.rate_limit is None:
            return 0.0
        limit = RateLimit.parse(source.rate_limit)
        waited = 0.0
        # One lock per source: a source waiting out its window never holds up another.
        async with self._locks.setdefault(source.name, asyncio.Lock()):
            starts = self._starts.setdefault(source.name, [])
            while True:
                now = self._clock()
                while starts and starts[0] <= now - limit.window_seconds:
                    starts.pop(0)
                if len(starts) < limit.max_starts:
                    starts.append(now)
                    return waited
                pause = starts[0] + limit.window_seconds - now
                waited += pause
                await asyncio.sleep(pause)


Sleep = Callable[[float], Awaitable[None]]


@dataclass
class Collector:
    """Runs one request through a chain of sources under their failure policies.

    ``chain`` is asked in order; when no source serves, the last cached value under
    ``cache_key`` (written by a live source) is served marked stale; else ``offline``
    (the replay source) is asked; else ``default`` is served. ``load_cached`` and
    ``mark_stale`` reach the cache (the pipeline passes :class:`MarketCache` methods).

    Example::

        collector = Collector([BinanceKlines(), CoinGeckoOhlc()], client)
        collection = await collector.collect(KlineRequest("BTCUSDT", "1h"))
    """

    chain: Sequence[Source]
    client: httpx.AsyncClient
    offline: Source | None = None
    default: Any = None
    cache_key: str | None = None
    load_cached: Callable[[str], Awaitable[Any]] | None = None
    mark_stale: Callable[[str], Awaitable[Any]] | None = None
    limiter: SourceLimiter = field(default_factory=SourceLimiter)
    sleep: Sleep = asyncio.sleep

    async def collect(self, request: Request) -> Collection:
        """Ask the chain; fall back to the cache, the offline source, the default."""
        collection = Collection()
        for source in self.chain:
            records = await self._ask(source, request, collection.steps)
            if records is not None:
                collection.served_by, collection.records, collection.live = (
                    source.name,
                    records,
                    source.live,
                )
                return collection
        cached = None
        if self.cache_key is not None and self.load_cached is not None:
            cached = await self.load_cached(self.cache_key)
        if cached is not None and _from_live_source(cached):
            if self.mark_stale is not None and self.cache_key is not None:
                await self.mark_stale(self.cache_key)
            collection.served_by, collection.value, collection.stale = "cache", cached, True
            collection.steps.append(
                Step("cache", "stale", "every source failed: the last cached value, marked stale")
            )
            return collection
        if self.offline is not None:
            records = await self._ask(self.offline, request, collection.steps)
            if records is not None:
                collection.served_by, collection.records = self.offline.name, records
                collection.live = False
                return collection
        if self.default is not None:
            collection.served_by, collection.value = "default", self.default
            collection.steps.append(
                Step(
                    "default",
                    "default",
                    f"every source failed and nothing is cached: the default {self.default!r}",
                )
            )
        return collection

    async def _ask(
        self, source: Source, request: Request, steps: list[Step]
    ) -> list[Kline] | list[Observation] | None:
        """One source under its policy: its records, or ``None`` (steps say why)."""
        policy = source.policy
        timeouts = rate_waits = 0
        while True:
            await self.limiter.acquire(source)
            try:
                records = source.validate(await source.collect(self.client, request), request)
            except RateLimited as exc:
                wait = policy.retry_after_default if exc.retry_after is None else exc.retry_after
                if rate_waits >= policy.rate_limit_retries or wait > policy.retry_after_max:
                    steps.append(Step(source.name, exc.outcome, f"{exc.reason}; next source"))
                    return None
                rate_waits += 1
                steps.append(Step(source.name, exc.outcome, f"{exc.reason}; retrying", wait))
                logger.info("%s; waiting %.3g s, then retrying", exc.reason, wait)
                await self.sleep(wait)
            except SourceTimeout as exc:
                timeouts += 1
                if timeouts >= policy.timeout_tries:
                    steps.append(
                        Step(
                            source.name,
                            exc.outcome,
                            f"{exc.reason} (try {timeouts} of {policy.timeout_tries}); next source",
                        )
                    )
                    logger.warning("%s: %d tries timed out; next source", source.name, timeouts)
                    return None
                steps.append(
                    Step(
                        source.name,
                        exc.outcome,
                        f"{exc.reason} (try {timeouts} of {policy.timeout_tries})",
                        policy.timeout_spacing,
                    )
                )
                await self.sleep(policy.timeout_spacing)
            except InvalidPayload as exc:
                # Garbage is refused whole and never stored: the data already kept stays.
                logger.warning("%s (refused, nothing stored)", exc.reason)
                steps.append(Step(source.name, exc.outcome, exc.reason))
                return None
            except SourceSkipped as exc:
                logger.info("%s", exc.reason)
                steps.append(Step(source.name, exc.outcome, exc.reason))
                return None
            except SourceError as exc:
                logger.warning("%s; next source", exc.reason)
                steps.append(Step(source.name, exc.outcome, exc.reason))
                return None
            else:
                steps.append(Step(source.name, "served"))
                return records


def _from_live_source(cached: Any) -> bool:
    """Whether a cached value came from a live source (the replay's never counts as one)."""
    return not (isinstance(cached, dict) and cached.get("live") is False)
