"""Which fires of a due schedule become tasks: misfire grace, coalesce, max instances.

Exactly-once fire
    A fire is the pair (schedule, fire instant). Whoever computes it, it is
    enqueued as a task row whose ``(schedule_id, fire_at)`` is unique, with ON
    CONFLICT DO NOTHING: a second ticker, a deposed leader or a retried tick
    can compute the same fire again, and it is stored once. Fires that do not
    become tasks are recorded as schedule events instead, so nothing silently
    disappears.

This module is pure (no I/O, the clock is an argument), so the policy is
tested with any instant.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from tickbase.scheduler.triggers import Trigger, fires_between

# Fires listed one by one as missed before the rest are summed up in one event:
# a per-second schedule left off for a day must not write 86,400 events.
MISSED_LISTED_MAX = 100
# Fires within the grace period caught up in one tick, at most.
CATCH_UP_MAX = 10_000


@dataclass
class FirePlan:
    """What one tick does with one due schedule."""

    fires: list[datetime] = field(default_factory=list)
    events: list[tuple[str, datetime | None, dict[str, Any] | None]] = field(default_factory=list)
    next_fire_at: datetime | None = None


def plan_fires(
    *,
    trigger: Trigger,
    next_fire_at: datetime,
    now: datetime,
    misfire_grace_seconds: float,
    coalesce: bool,
    max_instances: int,
    outstanding: int,
) -> FirePlan:
    """Decide the fires of a schedule due at ``next_fire_at``, seen at ``now``.

    * a fire later than the grace period is *missed*: recorded, not run;
    * the fires within the grace period are all caught up, each once (with
      ``coalesce``, only the latest of them runs and the others are recorded
      as coalesced);
    * a fire that would make more than ``max_instances`` executions outstanding
      is *skipped* and recorded.
    """
    plan = FirePlan()
    if next_fire_at > now:
        plan.next_fire_at = next_fire_at
        return plan
    cutoff = now - timedelta(seconds=misfire_grace_seconds)

    # Missed fires: those earlier than the cutoff (a fire exactly grace seconds
    # late still runs, whatever came before it), listed up to a bound.
    missed: list[datetime] = []
    first_on_time = next_fire_at
    if next_fire_at < cutoff:
        later = fires_between(trigger, next_fire_at, cutoff, MISSED_LISTED_MAX - 1)
        missed = [next_fire_at, *(fire for fire in later if fire < cutoff)]
        # Fires between the last listed one and the cutoff are summed, not walked.
        first_on_time = trigger.next_after(missed[-1])
        if first_on_time < cutoff:
            first_on_time = trigger.next_after(cutoff - timedelta(microseconds=1))
        unlisted_until = cutoff if len(missed) >= MISSED_LISTED_MAX else None
        for fire in missed:
            plan.events.append(("missed", fire, {"late_seconds": (now - fire).total_seconds()}))
        if unlisted_until is not None and trigger.next_after(missed[-1]) < cutoff:
            plan.events.append(
                (
                    "missed",
                    None,
                    {"more_missed_after": missed[-1].isoformat(), "until": cutoff.isoformat()},
                )
            )
        if first_on_time > now:
            plan.next_fire_at = first_on_time
            return plan

    on_time = [first_on_time, *fires_between(trigger, first_on_time, now, CATCH_UP_MAX - 1)]
    if coalesce and len(on_time) > 1:
        for fire in on_time[:-1]:
            plan.events.append(("coalesced", fire, {"into": on_time[-1].isoformat()}))
        on_time = on_time[-1:]

    room = max_instances - outstanding
    for fire in on_time:
        if room > 0:
            plan.fires.append(fire)
            room -= 1
        else:
            plan.events.append(
                ("skipped", fire, {"reason": "max_instances", "max_instances": max_instances})
            )
    plan.next_fire_at = trigger.next_after(max(on_time[-1], now))
    return plan
