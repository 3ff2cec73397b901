"""When a schedule fires: cron expressions (via croniter) and fixed intervals.

Cron semantics (fields, ranges, the day-of-month/day-of-week OR rule, ``L``
and ``#``) are croniter's; tickbase writes no cron parser. Five fields, or six
with a leading seconds field, or one of the nicknames ``@hourly``, ``@daily``
(``@midnight``), ``@weekly``, ``@monthly`` and ``@yearly`` (``@annually``). A
nickname is stored as written and expanded to its five fields to be walked.

Time zones and DST
    A cron expression names wall-clock times in the schedule's IANA zone.
    croniter walks the wall clock (naive local times); tickbase then maps each
    wall time to an instant:

    * a wall time that does not exist (the hour skipped when clocks spring
      forward) is skipped, once;
    * a wall time that exists twice (the hour repeated when clocks fall back)
      fires once, at its first occurrence.

    Intervals are plain elapsed time and ignore zones.
"""

from __future__ import annotations

import functools
import math
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadCronError, CroniterBadDateError, CroniterError, croniter

from tickbase.errors import InvalidSchedule, plural

# A wall-clock walk that finds no existing time in this many steps is a bug or
# an expression that never matches (e.g. 30 February).
_MAX_WALK = 10_000
_WALK_LOCK = threading.Lock()
_FIELD_NAMES_5 = ("minute", "hour", "day of month", "month", "day of week")
_FIELD_NAMES_6 = ("second", *_FIELD_NAMES_5)
CRON_NICKNAMES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


def expand_cron(expression: str) -> str:
    """``expression`` with a nickname (``@daily``) replaced by its five fields.

    Example::

        expand_cron("@hourly")  # "0 * * * *"
    """
    return CRON_NICKNAMES.get(expression.strip().lower(), expression)


@functools.lru_cache(maxsize=512)
def load_zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``, or :class:`InvalidSchedule` naming it."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise InvalidSchedule(
            "timezone", name, "unknown time zone (use an IANA name such as America/New_York)"
        ) from None


def check_cron(expression: str) -> None:
    """Raise :class:`InvalidSchedule` saying which field is wrong and why."""
    if not isinstance(expression, str) or not expression.strip():
        raise InvalidSchedule("cron", expression, "empty expression")
    if expression.strip().startswith("@") and expression.strip().lower() not in CRON_NICKNAMES:
        raise InvalidSchedule(
            "cron", expression, f"unknown nickname; use one of {', '.join(CRON_NICKNAMES)}"
        )
    fields = expand_cron(expression).split()
    if len(fields) not in (5, 6):
        raise InvalidSchedule(
            "cron",
            expression,
            f"has {plural(len(fields), 'field')}; use 5 (minute hour day-of-month month day-of-week), "
            "6 with a leading seconds field, or a nickname such as @daily",
        )
    expression = " ".join(fields)
    names = _FIELD_NAMES_6 if len(fields) == 6 else _FIELD_NAMES_5
    try:
        croniter(expression, second_at_beginning=len(fields) == 6)
    except (CroniterBadCronError, CroniterError, ValueError) as exc:
        raise InvalidSchedule("cron", expression, _which_field(fields, names, str(exc))) from None
    # An expression can be valid field by field yet never match (30 February).
    try:
        CronTrigger(expression, "UTC").next_after(datetime(2000, 1, 1, tzinfo=UTC))
    except InvalidSchedule:
        raise
    except (CroniterBadDateError, CroniterError) as exc:
        raise InvalidSchedule("cron", expression, f"never matches a date ({exc})") from None


def _which_field(fields: list[str], names: tuple[str, ...], reason: str) -> str:
    for field, name in zip(fields, names, strict=True):
        probe = ["*"] * len(fields)
        probe[names.index(name)] = field
        try:
            croniter(" ".join(probe), second_at_beginning=len(fields) == 6)
        except (CroniterBadCronError, CroniterError, ValueError) as exc:
            return f"{name} field {field!r} is invalid ({exc})"
    return reason


@dataclass(frozen=True)
class CronTrigger:
    """Fire times of a cron expression in a time zone.

    Example::

        CronTrigger("30 9 * * 1-5", "America/New_York").next_after(now)
    """

    expression: str
    timezone: str = "UTC"

    def next_after(self, after: datetime) -> datetime:
        """The first fire instant strictly after ``after`` (aware, returned in UTC)."""
        return _cron_next(self.expression, self.timezone, after)


# A tick plans many schedules that share an expression and a due instant (a
# thousand schedules firing every second ask the same question a thousand
# times), and parsing an expression costs more than walking it: both the
# parsed expression and the answers are cached. Pure functions of their
# arguments, so the caches cannot go stale.
@functools.lru_cache(maxsize=4096)
def _cron_next(expression: str, timezone: str, after: datetime) -> datetime:
    zone = load_zone(timezone)
    # Walk from the wall time of `after`. In a repeated hour the walk may
    # propose a wall time whose (first) instant is already past: skipped below.
    walker = _walker(expression)
    with _WALK_LOCK:  # one parsed walker per expression, shared by threads
        walker.set_current(after.astimezone(zone).replace(tzinfo=None), force=True)
        for _ in range(_MAX_WALK):
            candidate: datetime = walker.get_next(datetime)
            instant = _instant(candidate, zone)
            if instant is not None and instant > after:
                return instant.astimezone(UTC)
    raise InvalidSchedule("cron", expression, "no fire time found")


@functools.lru_cache(maxsize=1024)
def _walker(expression: str) -> croniter:
    fields = expand_cron(expression).split()
    return croniter(" ".join(fields), datetime(2000, 1, 1), second_at_beginning=len(fields) == 6)


def _instant(wall: datetime, zone: ZoneInfo) -> datetime | None:
    """The instant of a naive wall time: None when it does not exist, its first
    occurrence when it exists twice."""
    first = wall.replace(tzinfo=zone, fold=0)
    round_trip = first.astimezone(UTC).astimezone(zone).replace(tzinfo=None)
    if round_trip != wall:
        return None  # skipped by a spring-forward gap
    return first


@dataclass(frozen=True)
class IntervalTrigger:
    """Every ``seconds`` seconds of elapsed time, counted from ``anchor``."""

    seconds: float
    anchor: datetime

    def next_after(self, after: datetime) -> datetime:
        """The first ``anchor + k * seconds`` strictly after ``after``."""
        elapsed = (after - self.anchor).total_seconds()
        steps = max(0, math.floor(elapsed / self.seconds) + 1)
        candidate = self.anchor + timedelta(seconds=steps * self.seconds)
        while candidate <= after:  # float rounding at the boundary
            steps += 1
            candidate = self.anchor + timedelta(seconds=steps * self.seconds)
        return candidate.astimezone(UTC)


class Trigger(Protocol):
    """Anything that knows its next fire instant."""

    def next_after(self, after: datetime) -> datetime: ...


def make_trigger(
    kind: str, cron: str | None, interval_seconds: float | None, timezone: str, anchor: datetime
) -> Trigger | None:
    """The trigger of a schedule's columns (``None`` for a manual schedule).

    An interval counts from ``anchor``, any instant on its grid.
    """
    if kind == "cron":
        return CronTrigger(cron or "", timezone)
    if kind == "interval":
        return IntervalTrigger(float(interval_seconds or 0), anchor)
    return None


def fires_between(trigger: Trigger, start: datetime, end: datetime, limit: int) -> list[datetime]:
    """Fire instants of ``trigger`` in ``(start, end]``, oldest first, at most ``limit``."""
    fires: list[datetime] = []
    current = start
    while len(fires) < limit:
        current = trigger.next_after(current)
        if current > end:
            break
        fires.append(current)
    return fires
