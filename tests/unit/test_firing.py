"""The firing policy with a controlled clock: misfire grace, catch-up, coalesce, max instances."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from tickbase.scheduler.firing import MISSED_LISTED_MAX, plan_fires
from tickbase.scheduler.triggers import CronTrigger, IntervalTrigger

EVERY_SECOND = CronTrigger("* * * * * *")
NOW = datetime(2026, 5, 4, 12, 0, 0, 250_000, tzinfo=UTC)


def plan(next_fire_at: datetime, **kwargs: Any) -> Any:
    options: dict[str, Any] = {
        "trigger": EVERY_SECOND,
        "now": NOW,
        "misfire_grace_seconds": 60,
        "coalesce": False,
        "max_instances": 1000,
        "outstanding": 0,
    }
    options.update(kwargs)
    return plan_fires(next_fire_at=next_fire_at, **options)


def seconds(*values: int) -> list[datetime]:
    base = NOW.replace(microsecond=0)
    return [base + timedelta(seconds=v) for v in values]


def test_not_yet_due_does_nothing() -> None:
    result = plan(NOW + timedelta(seconds=1))
    assert result.fires == [] and result.events == []
    assert result.next_fire_at == NOW + timedelta(seconds=1)


def test_fires_within_grace_are_all_caught_up_once() -> None:
    result = plan(seconds(-5)[0])  # a leader takeover left 6 fires behind
    assert result.fires == seconds(-5, -4, -3, -2, -1, 0)
    assert result.events == []
    assert result.next_fire_at == seconds(1)[0]


def test_fires_older_than_grace_are_missed_not_run() -> None:
    result = plan(seconds(-64)[0], misfire_grace_seconds=60)
    missed = [fire for event, fire, _ in result.events if event == "missed"]
    assert missed == seconds(-64, -63, -62, -61, -60)  # -60 is 60.25 s late
    assert result.fires == [seconds(s)[0] for s in range(-59, 1)]


def test_a_long_outage_is_summed_up_not_listed() -> None:
    result = plan(NOW - timedelta(days=1), misfire_grace_seconds=0.5)
    listed = [e for e in result.events if e[0] == "missed" and e[1] is not None]
    summary = [e for e in result.events if e[0] == "missed" and e[1] is None]
    assert len(listed) == MISSED_LISTED_MAX and len(summary) == 1
    assert result.fires == seconds(0)
    assert result.next_fire_at == seconds(1)[0]


def test_coalesce_runs_several_missed_fires_once() -> None:
    result = plan(seconds(-5)[0], coalesce=True)
    assert result.fires == seconds(0)
    coalesced = [fire for event, fire, _ in result.events if event == "coalesced"]
    assert coalesced == seconds(-5, -4, -3, -2, -1)


def test_max_instances_skips_and_records() -> None:
    result = plan(seconds(-2)[0], max_instances=2, outstanding=1)
    assert result.fires == seconds(-2)
    skipped = [
        (fire, detail["reason"]) for event, fire, detail in result.events if event == "skipped"
    ]
    assert skipped == [(seconds(-1)[0], "max_instances"), (seconds(0)[0], "max_instances")]
    full = plan(seconds(0)[0], max_instances=1, outstanding=1)
    assert full.fires == [] and [e[0] for e in full.events] == ["skipped"]
    assert full.next_fire_at == seconds(1)[0]


def test_interval_catch_up_keeps_its_grid() -> None:
    anchor = NOW - timedelta(seconds=35)
    result = plan(anchor, trigger=IntervalTrigger(10, anchor))
    assert result.fires == [anchor + timedelta(seconds=s) for s in (0, 10, 20, 30)]
    assert result.next_fire_at == anchor + timedelta(seconds=40)


AT = NOW.replace(microsecond=0)  # a `now` on the per-second grid, for exact boundaries


def test_a_fire_exactly_grace_seconds_late_still_runs() -> None:
    # The cutoff is inclusive: late by exactly the grace is on time.
    result = plan(AT - timedelta(seconds=60), now=AT, misfire_grace_seconds=60)
    assert [e for e in result.events if e[0] == "missed"] == []
    assert result.fires[0] == AT - timedelta(seconds=60)
    assert len(result.fires) == 61
    late = plan(AT - timedelta(seconds=60), now=AT, misfire_grace_seconds=59.5)
    assert [fire for event, fire, _ in late.events if event == "missed"] == [
        AT - timedelta(seconds=60)
    ]
    assert late.events[0][2] == {"late_seconds": 60.0}
    assert late.fires[0] == AT - timedelta(seconds=59)


def test_all_fires_missed_leaves_nothing_to_run_and_points_to_the_future() -> None:
    anchor = AT - timedelta(hours=2, seconds=30)
    hourly = IntervalTrigger(3600, anchor)
    result = plan(anchor, now=AT, trigger=hourly, misfire_grace_seconds=10)
    assert result.fires == []
    assert [fire for event, fire, _ in result.events if event == "missed"] == [
        anchor,
        anchor + timedelta(hours=1),
        anchor + timedelta(hours=2),
    ]
    assert result.next_fire_at == anchor + timedelta(hours=3)
    assert result.next_fire_at > AT


def test_exactly_the_listed_maximum_missed_has_no_summary_one_more_has() -> None:
    grace = {"now": AT, "misfire_grace_seconds": 0.5}
    exact = plan(AT - timedelta(seconds=MISSED_LISTED_MAX), **grace)
    assert len(exact.events) == MISSED_LISTED_MAX
    assert all(fire is not None for _, fire, _ in exact.events)
    assert exact.fires == [AT]
    more = plan(AT - timedelta(seconds=MISSED_LISTED_MAX + 1), **grace)
    assert len(more.events) == MISSED_LISTED_MAX + 1
    event, fire, detail = more.events[-1]
    assert (event, fire) == ("missed", None)
    assert detail == {
        "more_missed_after": (AT - timedelta(seconds=2)).isoformat(),
        "until": (AT - timedelta(seconds=0.5)).isoformat(),
    }
    assert more.fires == [AT]


def test_coalesce_of_a_single_due_fire_records_nothing() -> None:
    result = plan(AT, now=AT, coalesce=True)
    assert result.fires == [AT] and result.events == []


def test_coalesce_after_misfires_runs_the_latest_within_grace() -> None:
    result = plan(AT - timedelta(seconds=5), now=AT, coalesce=True, misfire_grace_seconds=2.5)
    kinds = [(event, fire) for event, fire, _ in result.events]
    assert kinds == [
        ("missed", AT - timedelta(seconds=5)),
        ("missed", AT - timedelta(seconds=4)),
        ("missed", AT - timedelta(seconds=3)),
        ("coalesced", AT - timedelta(seconds=2)),
        ("coalesced", AT - timedelta(seconds=1)),
    ]
    assert result.events[-1][2] == {"into": AT.isoformat()}
    assert result.fires == [AT]


def test_coalesced_fire_is_still_bound_by_max_instances() -> None:
    result = plan(AT - timedelta(seconds=3), now=AT, coalesce=True, max_instances=1, outstanding=1)
    assert result.fires == []
    assert [e[0] for e in result.events] == ["coalesced"] * 3 + ["skipped"]
    assert result.events[-1] == ("skipped", AT, {"reason": "max_instances", "max_instances": 1})
    assert result.next_fire_at == AT + timedelta(seconds=1)


def test_more_outstanding_than_max_instances_skips_everything() -> None:
    result = plan(AT - timedelta(seconds=1), now=AT, max_instances=2, outstanding=5)
    assert result.fires == []
    assert [(e[0], e[1]) for e in result.events] == [
        ("skipped", AT - timedelta(seconds=1)),
        ("skipped", AT),
    ]


def test_cron_catch_up_in_a_real_zone_skips_the_dst_gap() -> None:
    # Every 30 minutes in New York, seen at 03:15 EDT on 2026-03-08 after an outage
    # from 01:00 EST: 02:00 and 02:30 do not exist, so they are neither run nor missed.
    ny = ZoneInfo("America/New_York")
    trigger = CronTrigger("*/30 * * * *", "America/New_York")
    # `now` in UTC, as the ticker's clock gives it: aware arithmetic in a zone is
    # wall-clock, and would shorten the grace by the hour the clocks skip.
    now = datetime(2026, 3, 8, 3, 15, tzinfo=ny).astimezone(UTC)
    result = plan(
        datetime(2026, 3, 8, 1, 0, tzinfo=ny).astimezone(UTC),
        trigger=trigger,
        now=now,
        misfire_grace_seconds=2 * 3600,  # 01:00 EST is 1 h 15 min before 03:15 EDT
    )
    assert [f.astimezone(ny).strftime("%H:%M%z") for f in result.fires] == [
        "01:00-0500",
        "01:30-0500",
        "03:00-0400",
    ]
    assert result.events == []
    assert result.next_fire_at == datetime(2026, 3, 8, 3, 30, tzinfo=ny)


def test_a_fire_exactly_grace_seconds_late_runs_after_earlier_missed_ones_too() -> None:
    result = plan(AT - timedelta(seconds=5), now=AT, misfire_grace_seconds=2)
    missed = [fire for event, fire, _ in result.events if event == "missed"]
    assert missed == [AT - timedelta(seconds=s) for s in (5, 4, 3)]
    assert result.fires[0] == AT - timedelta(seconds=2)
