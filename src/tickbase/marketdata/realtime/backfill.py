"""Bars the live stream missed trades for, fetched again from Binance's REST klines.

Overview
--------
A :class:`~tickbase.marketdata.realtime.binance_stream.TradeGap` says the trades of one
symbol between two times were missed. Every bar of each interval (default 1m, 5m, 1h)
whose ``[open, close]`` overlaps ``[from_ms, to_ms]`` was aggregated from incomplete trades
(:func:`affected_bars`). :class:`GapBackfill` waits until each such bar is final — its
close time, plus the aggregator's lateness window, plus a margin for the exchange to
settle, has passed by the wall clock — then fetches those bars with
``GET /api/v3/klines?symbol=&interval=&startTime=&endTime=`` and stores them into the live
series marked ``backfilled``. The real-time writer's later live writes of the same bars
leave them as they are (``klines_upsert`` with ``live``).

Waiting per interval, soonest first: the 1m bars of a gap are stored a minute or so after
it, the 1h bar once the hour is over.

Failure cases
-------------
A failed fetch (unreachable, HTTP error, rate limited, a payload refused) is retried with
backoff (a rate limit's ``Retry-After`` respected) at most ``attempts`` times; the first
failure of a series is logged, and giving up is logged, not each try. ``failures`` counts
failed attempts, ``abandoned`` the series given up. A bar Binance does not return (a
minute without trades has no bar) is simply not stored.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Final

import httpx

from tickbase.errors import RateLimited, SourceError
from tickbase.marketdata.collector import Kline, KlineRequest
from tickbase.marketdata.realtime.aggregator import DEFAULT_LATENESS_MS
from tickbase.marketdata.realtime.binance_stream import TradeGap
from tickbase.marketdata.realtime.kline import DEFAULT_INTERVALS, interval_ms
from tickbase.marketdata.sources.binance import BinanceKlines
from tickbase.marketdata.store import KlineStore
from tickbase.service import Backoff

__all__ = ["BACKFILL_MARGIN_MS", "GapBackfill", "affected_bars", "final_at_ms"]

logger = logging.getLogger("tickbase.marketdata.realtime")

BACKFILL_MARGIN_MS: Final = 3_000
"""After a bar is final here, how long the exchange is given before its REST bar is read."""
ATTEMPTS_DEFAULT: Final = 5
RETRY_FIRST: Final = 1.0  # seconds
RETRY_MAX: Final = 60.0  # seconds
_REST_MAX_BARS: Final = 1000  # Binance's largest klines limit
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def affected_bars(from_ms: int, to_ms: int, interval: str) -> list[int]:
    """Open times (ms) of every ``interval`` bar whose ``[open, close]`` overlaps
    ``[from_ms, to_ms]``.

    Example::

        >>> affected_bars(59_000, 61_000, "1m")
        [0, 60000]
    """
    if to_ms < from_ms:
        raise ValueError(f"a gap ends before it starts: {from_ms} > {to_ms}")
    step = interval_ms(interval)
    return list(range(from_ms // step * step, to_ms // step * step + 1, step))


def final_at_ms(open_ms: int, interval: str, lateness_ms: int, margin_ms: int) -> int:
    """When (epoch ms) the bar opening at ``open_ms`` is final and settled: its close time
    (``open + interval − 1``) plus the lateness window plus the margin."""
    return open_ms + interval_ms(interval) - 1 + lateness_ms + margin_ms


class GapBackfill:
    """Fetch and store, marked backfilled, the bars a :class:`TradeGap` affected.

    Example::

        backfill = GapBackfill(KlineStore(app.pool), base_url=settings.binance_url)
        async for event in stream:
            if isinstance(event, TradeGap):
                backfill.submit(event)       # in the background: it waits for final bars
        ...
        await backfill.aclose()

    ``source`` is the live series' source name (the rows are that series'). ``clock``
    (epoch seconds) and ``sleep`` are the wall clock and ``asyncio.sleep``; a test may give
    its own. Counters: ``gaps_backfilled``, ``bars_backfilled``, ``failures`` (failed fetch
    attempts), ``abandoned`` (series given up after ``attempts``).
    """

    def __init__(
        self,
        store: KlineStore,
        *,
        base_url: str,
        source: str = "binance",
        intervals: Iterable[str] = DEFAULT_INTERVALS,
        lateness_ms: int = DEFAULT_LATENESS_MS,
        margin_ms: int = BACKFILL_MARGIN_MS,
        attempts: int = ATTEMPTS_DEFAULT,
        retry_first: float = RETRY_FIRST,
        retry_max: float = RETRY_MAX,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.store = store
        self.rest = BinanceKlines(base_url)
        self.source = source
        self.intervals = tuple(intervals)
        for interval in self.intervals:
            interval_ms(interval)  # refuse a month at once, not when a gap comes
        self.lateness_ms = lateness_ms
        self.margin_ms = margin_ms
        self.attempts = max(1, attempts)
        self.retry_first = retry_first
        self.retry_max = retry_max
        self._client = client
        self._own_client = client is None
        self._clock = clock
        self._sleep = sleep
        self._tasks: set[asyncio.Task[int]] = set()
        self.gaps_backfilled = 0
        self.bars_backfilled = 0
        self.failures = 0
        self.abandoned = 0

    def plan(self, gap: TradeGap) -> list[tuple[int, str, list[int]]]:
        """``(final at ms, interval, open times)`` per interval, soonest final first."""
        plans = []
        for interval in self.intervals:
            opens = affected_bars(gap.from_ms, gap.to_ms, interval)
            final = final_at_ms(opens[-1], interval, self.lateness_ms, self.margin_ms)
            plans.append((final, interval, opens))
        plans.sort()
        return plans

    async def backfill(self, gap: TradeGap) -> int:
        """Wait for the gap's bars to be final, fetch and store them; how many were stored.

        A series whose fetch is given up is skipped (counted in ``abandoned``); the others
        are still stored.
        """
        stored = 0
        complete = True
        for final_ms, interval, opens in self.plan(gap):
            await self._wait_until(final_ms)
            bars = await self._fetch(gap.symbol, interval, opens)
            if bars is None:
                complete = False
                continue
            if bars:
                await self.store.upsert(self.source, gap.symbol, interval, bars, backfilled=True)
            stored += len(bars)
            self.bars_backfilled += len(bars)
        if complete:
            self.gaps_backfilled += 1
        logger.info(
            "backfilled %d bar(s) of %s after %s gap %d..%d",
            stored,
            gap.symbol,
            gap.reason,
            gap.after_id,
            gap.next_id,
        )
        return stored

    def submit(self, gap: TradeGap) -> asyncio.Task[int]:
        """:meth:`backfill` ``gap`` in the background (kept until done or :meth:`aclose`)."""
        task = asyncio.get_running_loop().create_task(
            self.backfill(gap), name=f"backfill-{gap.symbol}-{gap.after_id}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def aclose(self) -> None:
        """Cancel the backfills still waiting and close the HTTP client this made."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._own_client and self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _wait_until(self, at_ms: int) -> None:
        while (left := at_ms / 1000 - self._clock()) > 0:
            # Re-read the clock after each nap: a suspended laptop wakes late, not early.
            await self._sleep(min(left, 60.0))

    async def _fetch(self, symbol: str, interval: str, opens: Sequence[int]) -> list[Kline] | None:
        """The REST bars at ``opens`` (those Binance has), or ``None`` once given up."""
        step = interval_ms(interval)
        wanted = set(opens)
        out: list[Kline] = []
        for at in range(0, len(opens), _REST_MAX_BARS):
            chunk = opens[at : at + _REST_MAX_BARS]
            request = KlineRequest(
                symbol, interval, len(chunk), start_ms=chunk[0], end_ms=chunk[-1] + step - 1
            )
            bars = await self._fetch_chunk(request)
            if bars is None:
                return None
            out.extend(k for k in bars if _ms(k) in wanted)
        return out

    async def _fetch_chunk(self, request: KlineRequest) -> list[Kline] | None:
        backoff = Backoff(self.retry_first, self.retry_max)
        client = self._client
        if client is None:
            client = self._client = httpx.AsyncClient()
        for attempt in range(1, self.attempts + 1):
            try:
                raw = await self.rest.collect(client, request)
                return self.rest.validate(raw, request)
            except SourceError as exc:
                self.failures += 1
                delay = backoff.next()
                if isinstance(exc, RateLimited) and exc.retry_after is not None:
                    delay = max(delay, exc.retry_after)
                if attempt == self.attempts:
                    self.abandoned += 1
                    logger.error(
                        "backfill of %s %s given up after %d attempts: %s",
                        request.symbol,
                        request.interval,
                        attempt,
                        exc,
                    )
                    return None
                if attempt == 1:
                    logger.warning(
                        "backfill of %s %s failed (%s); retrying up to %d times",
                        request.symbol,
                        request.interval,
                        exc,
                        self.attempts - 1,
                    )
                await self._sleep(delay)
        return None


def _ms(kline: Kline) -> int:
    # Integer arithmetic: a float timestamp times 1000 can miss a millisecond.
    return (kline.open_time - _EPOCH) // timedelta(milliseconds=1)
