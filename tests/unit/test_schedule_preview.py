"""upcoming_fires: the next fires a schedule would have, by the scheduler's own walk (issue 16)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from tickbase.errors import InvalidSchedule
from tickbase.scheduler.models import ScheduleSpec, upcoming_fires
from tickbase.scheduler.store import first_fire
from tickbase.scheduler.triggers import CronTrigger

NOW = datetime(2026, 3, 7, 12, 7, 30, tzinfo=UTC)


def test_cron_fires_are_the_triggers_walk_from_the_first_stored_fire() -> None:
    spec = ScheduleSpec.build("p", "t", cron="*/15 * * * *", timezone="America/New_York")
    fires = upcoming_fires(spec, NOW)
    assert len(fires) == 5
    assert fires[0] == first_fire(spec, NOW)  # what a new schedule stores as its next fire
    trigger = CronTrigger("*/15 * * * *", "America/New_York")
    for before, after in itertools.pairwise(fires):
        assert after == trigger.next_after(before)
    assert fires == [NOW.replace(minute=15, second=0) + timedelta(minutes=15 * k) for k in range(5)]
    assert all(f.tzinfo == UTC for f in fires)


def test_the_zone_and_its_dst_policy_apply() -> None:
    # 02:30 does not exist in New York on 2026-03-08 (clocks spring forward): skipped.
    spec = ScheduleSpec.build("p", "t", cron="30 2 * * *", timezone="America/New_York")
    fires = upcoming_fires(spec, NOW)
    assert fires[0] == datetime(2026, 3, 9, 6, 30, tzinfo=UTC)  # 02:30 EDT
    assert fires[1] - fires[0] == timedelta(days=1)


def test_an_interval_counts_from_now() -> None:
    spec = ScheduleSpec.build("p", "t", every=90)
    assert upcoming_fires(spec, NOW) == [NOW + timedelta(seconds=90 * k) for k in range(1, 6)]


def test_a_manual_schedule_has_no_fires() -> None:
    assert upcoming_fires(ScheduleSpec.build("p", "t", manual=True), NOW) == []


@pytest.mark.parametrize(
    ("timing", "field", "words"),
    [
        ({"cron": "61 * * * *"}, "cron", "minute field '61'"),
        ({"cron": "* * *"}, "cron", "has 3 fields"),
        ({"cron": "0 0 30 2 *"}, "cron", "never matches"),
        ({"cron": "* * * * *", "timezone": "Mars/Olympus"}, "timezone", "unknown time zone"),
        ({"every": 0}, "interval", "must be a number of seconds"),
    ],
)
def test_refusals_name_the_field(timing: dict[str, object], field: str, words: str) -> None:
    with pytest.raises(InvalidSchedule) as refused:
        ScheduleSpec.build("p", "t", **timing)  # type: ignore[arg-type]
    assert refused.value.field == field and words in str(refused.value)
