"""The firing policy with a controlled clock: misfire grace, catch-up, coalesce, max instances."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

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
