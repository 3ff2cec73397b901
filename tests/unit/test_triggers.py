"""Next-fire sequences: cron semantics from croniter, DST policy from tickbase."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

from tickbase.errors import InvalidSchedule
from tickbase.scheduler.triggers import (
    CRON_NICKNAMES,
    CronTrigger,
    IntervalTrigger,
    check_cron,
    expand_cron,
    fires_between,
    load_zone,
    make_trigger,
)

NY = ZoneInfo("America/New_York")
LONDON = ZoneInfo("Europe/London")


def local_fires(expression: str, zone: str, start: datetime, end: datetime) -> list[str]:
    trigger = CronTrigger(expression, zone)
    return [
        f.astimezone(ZoneInfo(zone)).isoformat() for f in fires_between(trigger, start, end, 100)
    ]


def test_new_york_spring_forward_skips_the_missing_time_once() -> None:
    # 2026-03-08 02:00 EST -> 03:00 EDT: 02:30 does not exist that day.
    fires = local_fires(
        "30 2 * * *",
        "America/New_York",
        datetime(2026, 3, 6, 12, tzinfo=NY),
        datetime(2026, 3, 10, 12, tzinfo=NY),
    )
    assert fires == [
        "2026-03-07T02:30:00-05:00",
        "2026-03-09T02:30:00-04:00",
        "2026-03-10T02:30:00-04:00",
    ]


def test_new_york_fall_back_fires_the_repeated_time_once() -> None:
    # 2026-11-01 02:00 EDT -> 01:00 EST: 01:30 happens twice that day.
    fires = local_fires(
        "30 1 * * *",
        "America/New_York",
        datetime(2026, 10, 30, 12, tzinfo=NY),
        datetime(2026, 11, 2, 12, tzinfo=NY),
    )
    assert fires == [
        "2026-10-31T01:30:00-04:00",
        "2026-11-01T01:30:00-04:00",
        "2026-11-02T01:30:00-05:00",
    ]


def test_half_hourly_across_new_york_fall_back() -> None:
    fires = local_fires(
        "*/30 * * * *",
        "America/New_York",
        datetime(2026, 11, 1, 0, 10, tzinfo=NY),
        datetime(2026, 11, 1, 3, 0, tzinfo=NY),
    )
    assert fires == [
        "2026-11-01T00:30:00-04:00",
        "2026-11-01T01:00:00-04:00",
        "2026-11-01T01:30:00-04:00",
        "2026-11-01T02:00:00-05:00",  # 01:00 and 01:30 EST are the same wall times: not again
        "2026-11-01T02:30:00-05:00",
        "2026-11-01T03:00:00-05:00",
    ]


def test_london_spring_forward_and_fall_back() -> None:
    # 2026-03-29 01:00 GMT -> 02:00 BST; 2026-10-25 02:00 BST -> 01:00 GMT.
    spring = local_fires(
        "30 1 * * *",
        "Europe/London",
        datetime(2026, 3, 28, tzinfo=LONDON),
        datetime(2026, 3, 31, tzinfo=LONDON),
    )
    assert spring == ["2026-03-28T01:30:00+00:00", "2026-03-30T01:30:00+01:00"]
    autumn = local_fires(
        "30 1 * * *",
        "Europe/London",
        datetime(2026, 10, 24, 12, tzinfo=LONDON),
        datetime(2026, 10, 27, tzinfo=LONDON),
    )
    assert autumn == ["2026-10-25T01:30:00+01:00", "2026-10-26T01:30:00+00:00"]


def test_feb_29_and_last_day_of_month() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    leap = fires_between(CronTrigger("0 0 29 2 *"), start, datetime(2033, 1, 1, tzinfo=UTC), 10)
    assert [f.date().isoformat() for f in leap] == ["2028-02-29", "2032-02-29"]
    last = fires_between(
        CronTrigger("0 18 L * *"),
        datetime(2028, 1, 15, tzinfo=UTC),
        datetime(2028, 5, 1, tzinfo=UTC),
        10,
    )
    assert [f.isoformat() for f in last] == [
        "2028-01-31T18:00:00+00:00",
        "2028-02-29T18:00:00+00:00",
        "2028-03-31T18:00:00+00:00",
        "2028-04-30T18:00:00+00:00",
    ]


def test_nth_weekday_and_day_or_rule() -> None:
    second_monday = fires_between(
        CronTrigger("0 9 * * 1#2"),
        datetime(2026, 1, 1, tzinfo=UTC),
        datetime(2026, 4, 1, tzinfo=UTC),
        5,
    )
    assert [f.date().isoformat() for f in second_monday] == [
        "2026-01-12",
        "2026-02-09",
        "2026-03-09",
    ]
    # day-of-month OR day-of-week (classic cron): the 1st, and every Friday
    either = fires_between(
        CronTrigger("0 0 1 * 5"),
        datetime(2026, 5, 1, 1, tzinfo=UTC),
        datetime(2026, 6, 2, tzinfo=UTC),
        10,
    )
    assert [f.date().isoformat() for f in either] == [
        "2026-05-08",
        "2026-05-15",
        "2026-05-22",
        "2026-05-29",
        "2026-06-01",
    ]


def test_leading_seconds_field() -> None:
    fires = fires_between(
        CronTrigger("*/15 * * * * *"),
        datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC),
        datetime(2026, 1, 1, 0, 1, tzinfo=UTC),
        10,
    )
    assert [f.strftime("%M:%S") for f in fires] == ["00:15", "00:30", "00:45", "01:00"]


@pytest.mark.parametrize(
    "expression",
    [
        "*/5 * * * *",
        "0 9-17 * * 1-5",
        "15 3 1,15 * *",
        "0 0 L * *",
        "0 12 * * 5#3",
        "7 */2 * * * *",
    ],
)
@pytest.mark.parametrize("zone", ["UTC", "Asia/Shanghai", "America/New_York"])
def test_equals_croniter_away_from_dst(expression: str, zone: str) -> None:
    tz = ZoneInfo(zone)
    # the expressions fire away from the 01:00-03:00 hours that DST moves
    start = datetime(2026, 6, 1, 8, 7, 3, tzinfo=tz)
    ours = fires_between(CronTrigger(expression, zone), start, start + timedelta(days=3 * 366), 25)
    walker = croniter(expression, start, second_at_beginning=len(expression.split()) == 6)
    theirs = [walker.get_next(datetime) for _ in range(len(ours))]
    assert [f.astimezone(UTC) for f in ours] == [t.astimezone(UTC) for t in theirs]
    assert len(ours) == 25


def test_interval_counts_from_its_anchor() -> None:
    anchor = datetime(2026, 1, 1, tzinfo=UTC)
    trigger = IntervalTrigger(90, anchor)
    assert trigger.next_after(anchor) == anchor + timedelta(seconds=90)
    assert trigger.next_after(anchor + timedelta(seconds=100)) == anchor + timedelta(seconds=180)
    assert trigger.next_after(anchor + timedelta(seconds=180)) == anchor + timedelta(seconds=270)


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        ("61 * * * *", "minute field '61'"),
        ("0 25 * * *", "hour field '25'"),
        ("0 0 32 * *", "day of month field '32'"),
        ("0 0 * 13 *", "month field '13'"),
        ("0 0 * * 8", "day of week field '8'"),
        ("70 * * * * *", "second field '70'"),
        ("* * * *", "has 4 fields"),
        ("* * * * * * *", "has 7 fields"),
        ("0", "has 1 field;"),
        ("@fortnightly", "unknown nickname"),
        ("0 0 30 2 *", "never matches"),
        ("", "empty expression"),
    ],
)
def test_bad_expressions_name_the_field(expression: str, fragment: str) -> None:
    with pytest.raises(InvalidSchedule) as excinfo:
        check_cron(expression)
    assert fragment in str(excinfo.value)


@pytest.mark.parametrize(
    ("nickname", "after", "expected"),
    [
        ("@hourly", datetime(2026, 1, 1, 10, 30, tzinfo=UTC), datetime(2026, 1, 1, 11, tzinfo=UTC)),
        ("@daily", datetime(2026, 1, 1, 10, 30, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)),
        ("@midnight", datetime(2026, 1, 1, 10, 30, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)),
        # 2026-01-01 is a Thursday: the next Sunday is the 4th.
        ("@weekly", datetime(2026, 1, 1, 10, 30, tzinfo=UTC), datetime(2026, 1, 4, tzinfo=UTC)),
        ("@monthly", datetime(2026, 1, 1, 10, 30, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)),
        ("@yearly", datetime(2026, 1, 1, 10, 30, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
        ("@annually", datetime(2026, 1, 1, 10, 30, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
    ],
)
def test_cron_nicknames_are_accepted_and_fire_when_they_say(
    nickname: str, after: datetime, expected: datetime
) -> None:
    check_cron(nickname)
    assert CronTrigger(nickname, "UTC").next_after(after) == expected


def test_a_nickname_fires_in_the_schedules_zone() -> None:
    after = datetime(2026, 1, 1, 12, tzinfo=UTC)
    fire = CronTrigger("@daily", "America/New_York").next_after(after)
    assert fire.astimezone(NY) == datetime(2026, 1, 2, tzinfo=NY)


def test_hourly_across_new_york_spring_forward_skips_only_the_missing_hour() -> None:
    # 2026-03-08: 02:00 EST is followed by 03:00 EDT; 02:00 never happens.
    fires = local_fires(
        "0 * * * *",
        "America/New_York",
        datetime(2026, 3, 8, 0, 30, tzinfo=NY),
        datetime(2026, 3, 8, 4, 0, tzinfo=NY),
    )
    assert fires == [
        "2026-03-08T01:00:00-05:00",
        "2026-03-08T03:00:00-04:00",
        "2026-03-08T04:00:00-04:00",
    ]


def test_asked_from_inside_the_repeated_hour_the_wall_time_does_not_fire_again() -> None:
    # 01:40 EST, the second pass through 01:00-02:00 on 2026-11-01 (06:40 UTC):
    # 01:30 fired at its first occurrence (EDT), so the next is the next day.
    second_pass = datetime(2026, 11, 1, 6, 40, tzinfo=UTC)
    assert second_pass.astimezone(NY).isoformat() == "2026-11-01T01:40:00-05:00"
    fire = CronTrigger("30 1 * * *", "America/New_York").next_after(second_pass)
    assert fire.astimezone(NY).isoformat() == "2026-11-02T01:30:00-05:00"
    # A time after the repeated hour still fires in it, once, at 02:00 EST.
    fire = CronTrigger("0 * * * *", "America/New_York").next_after(second_pass)
    assert fire.astimezone(NY).isoformat() == "2026-11-01T02:00:00-05:00"


def test_fire_instants_come_back_in_utc() -> None:
    after = datetime(2026, 7, 1, 12, tzinfo=NY)
    fire = CronTrigger("0 13 * * *", "America/New_York").next_after(after)
    assert fire.tzinfo is UTC
    assert fire == datetime(2026, 7, 1, 17, tzinfo=UTC)


@pytest.mark.parametrize("written", ["@DAILY", " @daily ", "@Daily"])
def test_nicknames_ignore_case_and_surrounding_space(written: str) -> None:
    check_cron(written)
    assert expand_cron(written) == "0 0 * * *"
    after = datetime(2026, 1, 1, 10, tzinfo=UTC)
    assert CronTrigger(written).next_after(after) == datetime(2026, 1, 2, tzinfo=UTC)


def test_expand_cron_leaves_plain_expressions_alone() -> None:
    assert {name: expand_cron(name) for name in CRON_NICKNAMES} == {
        "@yearly": "0 0 1 1 *",
        "@annually": "0 0 1 1 *",
        "@monthly": "0 0 1 * *",
        "@weekly": "0 0 * * 0",
        "@daily": "0 0 * * *",
        "@midnight": "0 0 * * *",
        "@hourly": "0 * * * *",
    }
    assert expand_cron("*/5 * * * *") == "*/5 * * * *"


def test_unknown_zone_is_refused_by_name() -> None:
    with pytest.raises(InvalidSchedule, match="unknown time zone"):
        load_zone("America/Gotham")
    with pytest.raises(InvalidSchedule, match="unknown time zone"):
        CronTrigger("0 * * * *", "Mars/Olympus").next_after(datetime(2026, 1, 1, tzinfo=UTC))


def test_interval_before_its_anchor_first_fires_at_the_anchor() -> None:
    anchor = datetime(2026, 1, 1, 12, tzinfo=UTC)
    trigger = IntervalTrigger(60, anchor)
    assert trigger.next_after(anchor - timedelta(hours=5)) == anchor
    assert trigger.next_after(anchor - timedelta(seconds=1)) == anchor
    # Strictly after: a time on the grid gives the next grid point.
    assert trigger.next_after(anchor) == anchor + timedelta(seconds=60)


def test_interval_ignores_dst_and_returns_utc() -> None:
    # Hourly from 00:30 EST on the spring-forward day: elapsed hours, not wall hours.
    anchor = datetime(2026, 3, 8, 0, 30, tzinfo=NY)
    # (aware arithmetic in a zone is wall-clock: the end is computed in UTC)
    end = anchor.astimezone(UTC) + timedelta(hours=3)
    fires = fires_between(IntervalTrigger(3600, anchor), anchor, end, limit=10)
    assert [f.astimezone(NY).strftime("%H:%M%z") for f in fires] == [
        "01:30-0500",
        "03:30-0400",
        "04:30-0400",
    ]
    assert all(f.tzinfo is UTC for f in fires)


def test_fractional_interval_is_strictly_after_even_with_float_rounding() -> None:
    anchor = datetime(2026, 1, 1, tzinfo=UTC)
    trigger = IntervalTrigger(0.1, anchor)
    current = anchor
    for step in range(1, 50):
        following = trigger.next_after(current)
        assert following > current
        assert following == anchor + timedelta(seconds=step * 0.1)
        current = following


def test_make_trigger_by_kind() -> None:
    anchor = datetime(2026, 1, 1, tzinfo=UTC)
    assert make_trigger("cron", "@hourly", None, "Europe/London", anchor) == CronTrigger(
        "@hourly", "Europe/London"
    )
    assert make_trigger("interval", None, 30, "UTC", anchor) == IntervalTrigger(30.0, anchor)
    assert make_trigger("manual", None, None, "UTC", anchor) is None
