"""What is stored, at a glance: each K-line series' span and freshness, and the
completeness of its last integrity check per day (the dashboard's market page).

Freshness
    A series is *fresh* while its newest bar opened less than two intervals plus
    :data:`COLLECT_SLACK` ago (a collection runs every 5 minutes; a bar is stored
    once closed), *stale* after. Months count as 31 days.

Completeness per day
    ``tickbase.series_integrity`` keeps, per series, the window of its last check
    and the grid slots that held no traded bar. :func:`daily_completeness` splits
    that window into UTC days: for each, the slots expected and the slots present.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from tickbase.db.pool import AsyncConn
from tickbase.db.sqlfile import load_queries
from tickbase.marketdata.collector import interval_step

Q = load_queries("tickbase.marketdata")

MAX_SERIES = 500
"""The most series one read lists."""
COLLECT_SLACK = timedelta(minutes=10)
"""Two collections' worth of delay before a bar is overdue."""
MONTH = timedelta(days=31)

Freshness = Literal["fresh", "stale"]


def step_of(interval: str) -> timedelta:
    """The length of one bar (months: 31 days)."""
    seconds = interval_step(interval)
    return MONTH if seconds is None else timedelta(seconds=seconds)


def freshness(interval: str, last_open_time: datetime, now: datetime) -> Freshness:
    """``fresh`` while the newest bar opened less than two bars plus the slack ago."""
    return "fresh" if now - last_open_time <= 2 * step_of(interval) + COLLECT_SLACK else "stale"


@dataclass(frozen=True, slots=True)
class SeriesSummary:
    """One stored series: its current source, bar count and span, and freshness."""

    symbol: str
    interval: str
    source: str
    live: bool
    bars: int
    first_open_time: datetime
    last_open_time: datetime
    interval_seconds: int
    age_seconds: float
    freshness: Freshness


@dataclass(frozen=True, slots=True)
class DayCompleteness:
    """The slots of one UTC day inside an integrity window, and those holding a bar."""

    day: date
    expected: int
    present: int

    @property
    def completeness(self) -> float:
        return 100.0 if self.expected == 0 else round(100.0 * self.present / self.expected, 2)


@dataclass(frozen=True, slots=True)
class SeriesIntegrity:
    """The last integrity check of a series, whole and per day."""

    symbol: str
    interval: str
    window_start: datetime
    window_end: datetime
    expected: int
    present: int
    completeness: float
    missing: int
    checked_at: datetime
    days: list[DayCompleteness]


def daily_completeness(
    start: datetime, end: datetime, interval: str, missing: Iterable[datetime]
) -> list[DayCompleteness]:
    """The grid slots ``start <= slot < end`` per UTC day, and how many are not
    ``missing`` (the integrity check's slots without a traded bar)."""
    step = step_of(interval)
    gaps: dict[date, int] = {}
    for slot in missing:
        day = slot.astimezone(UTC).date()
        gaps[day] = gaps.get(day, 0) + 1
    expected: dict[date, int] = {}
    slot = start
    while slot < end:
        day = slot.astimezone(UTC).date()
        expected[day] = expected.get(day, 0) + 1
        slot += step
    return [
        DayCompleteness(day, count, max(count - gaps.get(day, 0), 0))
        for day, count in sorted(expected.items())
    ]


def _time(value: Any) -> datetime:
    """A slot of the ``missing`` list (jsonb: ISO 8601 text)."""
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


async def series_summaries(pool: AsyncConnectionPool[AsyncConn]) -> list[SeriesSummary]:
    """Every stored K-line series (at most :data:`MAX_SERIES`), by symbol and interval."""
    async with pool.connection() as conn:
        cursor = conn.cursor(row_factory=dict_row)
        await cursor.execute(Q["klines_series_summary"], {"limit": MAX_SERIES})
        rows = await cursor.fetchall()
    out: list[SeriesSummary] = []
    for row in rows:
        now, last = row["checked_at"], row["last_open_time"]
        out.append(
            SeriesSummary(
                symbol=row["symbol"],
                interval=row["interval"],
                source=row["source"],
                live=row["source"] != "replay",
                bars=int(row["bars"]),
                first_open_time=row["first_open_time"],
                last_open_time=last,
                interval_seconds=int(step_of(row["interval"]).total_seconds()),
                age_seconds=max((now - last).total_seconds(), 0.0),
                freshness=freshness(row["interval"], last, now),
            )
        )
    return out


def _integrity(row: dict[str, Any]) -> SeriesIntegrity:
    missing: Sequence[Any] = row["missing"] or []
    return SeriesIntegrity(
        symbol=row["symbol"],
        interval=row["interval"],
        window_start=row["window_start"],
        window_end=row["window_end"],
        expected=row["expected"],
        present=row["present"],
        completeness=round(float(row["completeness"]), 2),
        missing=len(missing),
        checked_at=row["checked_at"],
        days=daily_completeness(
            row["window_start"], row["window_end"], row["interval"], map(_time, missing)
        ),
    )


async def integrity_checks(pool: AsyncConnectionPool[AsyncConn]) -> list[SeriesIntegrity]:
    """The last integrity check of every checked series (at most :data:`MAX_SERIES`)."""
    async with pool.connection() as conn:
        cursor = conn.cursor(row_factory=dict_row)
        await cursor.execute(Q["series_integrity_list"], {"limit": MAX_SERIES})
        return [_integrity(row) for row in await cursor.fetchall()]
