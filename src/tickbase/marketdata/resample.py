"""Chart resolutions served from the stored intervals, coarser ones by aggregation.

A chart asks for a resolution (TradingView's ``"60"``, ``"240"``, ``"1D"``, ``"1W"``,
``"1M"``); tickbase stores a few intervals per series. A resolution is served

- from the stored interval of exactly its length, bar for bar; else
- by aggregating the coarsest stored interval whose length divides it (1h bars →
  4h or 1D; 1d bars → 1W): open of the first bar, highest high, lowest low, close of
  the last bar, summed volume, in buckets aligned to UTC boundaries of the target
  (days at 00:00 UTC, weeks on Monday 00:00 UTC like exchanges' weekly bars, months
  on the 1st), in one SQL statement (``klines_aggregate``, ``date_bin``);
- never from a coarser interval: a resolution finer than every stored interval, or
  one no stored interval divides, is a :class:`ResolutionError` naming the problem.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from psycopg_pool import AsyncConnectionPool

from tickbase.db.pool import AsyncConn
from tickbase.errors import ResolutionError
from tickbase.marketdata.bars import BarLike
from tickbase.marketdata.collector import interval_step
from tickbase.marketdata.store import Q

MONTH: Final = "month"
EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
MONDAY: Final = datetime(1970, 1, 5, tzinfo=UTC)
"""Weeks are binned from a Monday (1970-01-01 was a Thursday)."""
_WEEK_SECONDS: Final = 7 * 86_400
_RESOLUTION: Final = re.compile(r"^(\d{0,4})([SDWM]?)\Z")
_UNIT: Final = {"S": 1, "": 60, "D": 86_400, "W": _WEEK_SECONDS}

CHART_RESOLUTIONS: Final = (
    "1S", "5S", "15S", "30S",
    "1", "3", "5", "15", "30", "45", "60", "120", "180", "240", "360", "480", "720",
    "1D", "2D", "3D", "1W", "2W", "1M",
)  # fmt: skip
"""The resolutions offered a chart (TradingView's usual set), finest first."""


@dataclass(frozen=True, slots=True)
class Resolution:
    """A chart resolution: a fixed length in seconds, or one calendar month."""

    name: str
    seconds: int | None
    """``None``: a month (no fixed length)."""

    @property
    def origin(self) -> datetime:
        """Where its buckets are counted from (weeks from a Monday, the rest from 1970)."""
        if self.seconds is not None and self.seconds % _WEEK_SECONDS == 0:
            return MONDAY
        return EPOCH

    def bucket(self, at: datetime) -> datetime:
        """The start of the bucket holding ``at``."""
        if self.seconds is None:
            return at.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        elapsed = (at - self.origin).total_seconds()
        return self.origin + timedelta(seconds=elapsed // self.seconds * self.seconds)

    def after(self, bucket: datetime) -> datetime:
        """The start of the next bucket."""
        if self.seconds is None:
            year, month = divmod(bucket.month, 12)
            return bucket.replace(year=bucket.year + year, month=month + 1)
        return bucket + timedelta(seconds=self.seconds)


def parse_resolution(name: str) -> Resolution:
    """``"240"`` → 4 hours, ``"1D"``/``"D"`` → a day, ``"1M"``/``"M"`` → a month."""
    match = _RESOLUTION.match(name)
    if match is None or not (match[1] or match[2]) or (match[1] and int(match[1]) == 0):
        raise ResolutionError(
            f"invalid resolution {name!r}: minutes (e.g. 60, 240) or a count and S, D, W "
            "or M (e.g. 30S, 1D, 1W, 1M)"
        )
    count = int(match[1] or 1)
    if match[2] == "M":
        if count != 1:
            raise ResolutionError(f"resolution {name!r}: only one-month bars are served (1M)")
        return Resolution(name, None)
    return Resolution(name, count * _UNIT[match[2]])


def _divides(stored: str, target: Resolution) -> bool:
    step = interval_step(stored)
    if target.seconds is None:
        # a month is whole days: any interval that divides a day, or stored months
        return stored == "1M" if step is None else 86_400 % step == 0
    return step is not None and target.seconds % step == 0


def source_interval(target: Resolution, stored: Iterable[str]) -> str:
    """The stored interval that serves ``target``: its exact match, else the coarsest
    that divides it; :class:`ResolutionError` naming the stored intervals otherwise."""
    intervals = sorted(set(stored), key=_length)
    serving = [i for i in intervals if _divides(i, target)]
    if serving:
        return serving[-1]
    listed = ", ".join(intervals) or "none"
    finest = intervals[0] if intervals else None
    if finest is not None and _length(finest) > _target_length(target):
        raise ResolutionError(
            f"resolution {target.name!r} is finer than every stored interval ({listed}): "
            "bars cannot be split"
        )
    raise ResolutionError(
        f"resolution {target.name!r} is not a whole multiple of any stored interval ({listed})"
    )


def supported(stored: Iterable[str]) -> list[str]:
    """The chart resolutions the stored intervals serve, finest first."""
    intervals = set(stored)
    out: list[str] = []
    for name in CHART_RESOLUTIONS:
        target = parse_resolution(name)
        if any(_divides(i, target) for i in intervals):
            out.append(name)
    return out


def is_exact(interval: str, target: Resolution) -> bool:
    """Whether the stored interval is the resolution itself (no aggregation needed)."""
    step = interval_step(interval)
    return step == target.seconds if step is not None else target.seconds is None


def _length(interval: str) -> float:
    step = interval_step(interval)
    return 31 * 86_400 * int(interval[:-1]) if step is None else step


def _target_length(target: Resolution) -> float:
    return 31 * 86_400 if target.seconds is None else target.seconds


@dataclass(frozen=True, slots=True)
class AggregatedBar:
    """One bar of a coarser resolution built from stored bars."""

    open_time: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float


def aggregate_bars(bars: Iterable[BarLike], target: Resolution) -> list[AggregatedBar]:
    """In memory, what :func:`aggregate` does in SQL (``klines_aggregate``): ``bars``
    (oldest first) into ``target`` buckets: open of the first bar, highest high, lowest
    low, close of the last bar, summed volume; a bucket without bars has no bar."""
    out: list[AggregatedBar] = []
    for bar in bars:
        bucket = target.bucket(bar.open_time)
        if out and out[-1].open_time == bucket:
            prev = out[-1]
            out[-1] = AggregatedBar(
                bucket,
                prev.open,
                max(prev.high, bar.high),
                min(prev.low, bar.low),
                bar.close,
                prev.volume + bar.volume,
            )
        else:
            out.append(AggregatedBar(bucket, bar.open, bar.high, bar.low, bar.close, bar.volume))
    return out


async def aggregate(
    pool: AsyncConnectionPool[AsyncConn],
    symbol: str,
    interval: str,
    target: Resolution,
    start: datetime,
    end: datetime,
    *,
    limit: int,
) -> list[AggregatedBar]:
    """The ``target`` bars starting in ``start <= t < end`` (the newest ``limit``),
    oldest first, built from the series' stored ``interval`` bars of its current source.

    Buckets are whole: the last one holds its bars up to its own end even past ``end``
    (a chart asks for bars by their start time).
    """
    scan_start = target.bucket(start)
    scan_end = target.after(target.bucket(end - timedelta(microseconds=1)))
    async with pool.connection() as conn:
        cursor = await conn.execute(
            Q["klines_aggregate"],
            {
                "symbol": symbol,
                "interval": interval,
                "months": target.seconds is None,
                "step": target.seconds or 0,
                "origin": target.origin,
                "scan_start": scan_start,
                "scan_end": scan_end,
                "start": start,
                "end": end,
                "limit": limit,
            },
        )
        return [AggregatedBar(*row) for row in await cursor.fetchall()]
