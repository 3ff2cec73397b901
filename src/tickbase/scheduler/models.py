"""Schedule definitions (validated) and schedule rows."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from tickbase.errors import InvalidSchedule, InvalidTask
from tickbase.queue.models import (
    DEFAULT_QUEUE,
    PRIORITY_MAX,
    PRIORITY_MIN,
    QUEUE_NAME,
    TASK_TYPE_MAX,
    encode_payload,
)
from tickbase.scheduler.triggers import Trigger, check_cron, load_zone, make_trigger

NAME_MAX = 200
MISFIRE_GRACE_DEFAULT = 60.0  # seconds
KINDS = ("cron", "interval", "manual")
# Time has microsecond resolution: a shorter interval could never advance a
# schedule; a longer one than ten years is a typo (and overflows dates).
INTERVAL_MIN_SECONDS = 0.001
INTERVAL_MAX_SECONDS = 10 * 366 * 86400.0


@dataclass(frozen=True)
class ScheduleSpec:
    """What a schedule is (not its run-time state). Validated on construction.

    Build one with :meth:`build`, which takes the user-facing ``cron`` /
    ``every`` / ``manual`` choice.
    """

    name: str
    task_type: str
    kind: str
    cron: str | None = None
    interval_seconds: float | None = None
    timezone: str = "UTC"
    payload: dict[str, Any] = field(default_factory=dict)
    queue: str = DEFAULT_QUEUE
    priority: int = 0
    max_retries: int = 0
    retry_interval: float = 1.0
    timeout: float | None = None
    misfire_grace_seconds: float = MISFIRE_GRACE_DEFAULT
    coalesce: bool = False
    max_instances: int = 1
    enabled: bool = True
    description: str | None = None
    origin: str = "api"

    @classmethod
    def build(
        cls,
        name: str,
        task_type: str,
        *,
        cron: str | None = None,
        every: float | None = None,
        manual: bool = False,
        **options: Any,
    ) -> ScheduleSpec:
        """A spec from exactly one of ``cron=``, ``every=`` (seconds) or ``manual=True``.

        Example::

            ScheduleSpec.build("collect-btc", "marketdata.collect", cron="*/5 * * * *",
                               payload={"symbol": "BTCUSDT"}, timezone="UTC")
        """
        chosen = [label for label, value in (("cron", cron), ("every", every)) if value is not None]
        if manual and chosen:
            raise InvalidSchedule(
                chosen[0],
                cron if cron is not None else every,
                "a manual schedule never fires by itself: give no cron or interval",
            )
        if len(chosen) > 1:
            raise InvalidSchedule(
                "cron", cron, "give either a cron expression or an interval, not both"
            )
        if manual:
            return cls(name, task_type, "manual", **options)
        if cron is not None:
            return cls(name, task_type, "cron", cron=cron, **options)
        if every is not None:
            return cls(name, task_type, "interval", interval_seconds=every, **options)
        raise InvalidSchedule(
            "schedule", name, "give a cron expression (--cron), an interval (--every) or --manual"
        )

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not 0 < len(self.name.strip()) <= NAME_MAX:
            raise InvalidSchedule("name", self.name, f"must be 1 to {NAME_MAX} characters")
        if not isinstance(self.task_type, str) or not 0 < len(self.task_type) <= TASK_TYPE_MAX:
            raise InvalidSchedule(
                "task type", self.task_type, f"must be 1 to {TASK_TYPE_MAX} characters"
            )
        if self.kind not in KINDS:
            raise InvalidSchedule("kind", self.kind, f"use one of {', '.join(KINDS)}")
        if self.kind == "cron":
            if self.interval_seconds is not None:
                raise InvalidSchedule(
                    "cron", self.cron, "give either a cron expression or an interval, not both"
                )
            check_cron(self.cron or "")
        elif self.kind == "interval":
            if self.cron is not None:
                raise InvalidSchedule(
                    "cron", self.cron, "give either a cron expression or an interval, not both"
                )
            seconds = self.interval_seconds
            if (
                not isinstance(seconds, int | float)
                or isinstance(seconds, bool)
                or not math.isfinite(seconds)
                or not INTERVAL_MIN_SECONDS <= seconds <= INTERVAL_MAX_SECONDS
            ):
                raise InvalidSchedule(
                    "interval",
                    seconds,
                    f"must be a number of seconds from {INTERVAL_MIN_SECONDS:g}"
                    f" to {INTERVAL_MAX_SECONDS:g} (ten years)",
                )
        elif self.cron is not None or self.interval_seconds is not None:
            raise InvalidSchedule(
                "cron",
                self.cron or self.interval_seconds,
                "a manual schedule never fires by itself: give no cron or interval",
            )
        load_zone(self.timezone)
        if not isinstance(self.queue, str) or not QUEUE_NAME.match(self.queue):
            raise InvalidSchedule(
                "queue name", self.queue, "use 1 to 64 letters, digits or _ . : -"
            )
        if type(self.priority) is not int or not PRIORITY_MIN <= self.priority <= PRIORITY_MAX:
            raise InvalidSchedule(
                "priority",
                self.priority,
                f"must be an integer from {PRIORITY_MIN} to {PRIORITY_MAX}",
            )
        if not isinstance(self.payload, dict):
            raise InvalidSchedule("payload", self.payload, "must be a JSON object")
        try:
            encode_payload(self.payload)
        except InvalidTask as exc:
            raise InvalidSchedule("payload", self.payload, exc.reason) from None
        if type(self.max_retries) is not int or self.max_retries < 0:
            raise InvalidSchedule("max_retries", self.max_retries, "must be an integer >= 0")
        _check_seconds("retry_interval", self.retry_interval, allow_zero=True)
        if self.timeout is not None:
            _check_seconds("timeout", self.timeout, allow_zero=False)
        _check_seconds("misfire_grace_seconds", self.misfire_grace_seconds, allow_zero=True)
        if type(self.max_instances) is not int or self.max_instances < 1:
            raise InvalidSchedule("max_instances", self.max_instances, "must be an integer >= 1")
        if self.origin not in ("api", "code", "builtin"):
            raise InvalidSchedule("origin", self.origin, "use api, code or builtin")

    def trigger(self, anchor: datetime) -> Trigger | None:
        """The trigger of a timed schedule (``None`` for manual ones)."""
        return make_trigger(self.kind, self.cron, self.interval_seconds, self.timezone, anchor)

    def params(self, next_fire_at: datetime | None) -> dict[str, Any]:
        """Statement parameters of this spec."""
        values = asdict(self)
        values["payload"] = encode_payload(self.payload)
        values["next_fire_at"] = next_fire_at
        return values


def _check_seconds(name: str, value: Any, *, allow_zero: bool) -> None:
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not math.isfinite(value)
        or value < 0
        or (value == 0 and not allow_zero)
        or value > INTERVAL_MAX_SECONDS
    ):
        relation = ">= 0" if allow_zero else "> 0"
        raise InvalidSchedule(
            name,
            value,
            f"must be a number of seconds {relation}, at most {INTERVAL_MAX_SECONDS:g} (ten years)",
        )


PREVIEW_FIRES = 5


def upcoming_fires(spec: ScheduleSpec, now: datetime, count: int = PREVIEW_FIRES) -> list[datetime]:
    """The first ``count`` fires of ``spec`` were it created at ``now`` (UTC, oldest first).

    The same walk the scheduler makes: the first fire is the one a new
    schedule stores (its trigger anchored at ``now``, so an interval counts
    from now), each next one is its trigger's next fire after the previous.
    A manual schedule has none.

    Example::

        upcoming_fires(ScheduleSpec.build("p", "t", cron="*/15 * * * *"), now)
    """
    trigger = spec.trigger(anchor=now)
    if trigger is None:
        return []
    fires = [trigger.next_after(now)]
    while len(fires) < count:
        fires.append(trigger.next_after(fires[-1]))
    return fires


SPEC_FIELDS = tuple(ScheduleSpec.__dataclass_fields__)


@dataclass(frozen=True)
class Schedule:
    """A row of ``tickbase.schedules`` with its displayed status."""

    id: int
    spec: ScheduleSpec
    paused: bool
    next_fire_at: datetime | None
    last_fire_at: datetime | None
    created_at: datetime
    updated_at: datetime
    removed_at: datetime | None
    status: str

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Schedule:
        spec = ScheduleSpec(**{name: row[name] for name in SPEC_FIELDS})
        return cls(
            id=row["id"],
            spec=spec,
            paused=row["paused"],
            next_fire_at=row["next_fire_at"],
            last_fire_at=row["last_fire_at"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            removed_at=row["removed_at"],
            status=displayed_status(row["enabled"], row["paused"], row.get("latest_status")),
        )

    @property
    def name(self) -> str:
        return self.spec.name

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (times as ISO 8601)."""
        out: dict[str, Any] = {"id": self.id, **asdict(self.spec)}
        for key in (
            "paused",
            "next_fire_at",
            "last_fire_at",
            "created_at",
            "updated_at",
            "removed_at",
            "status",
        ):
            value = getattr(self, key)
            out[key] = value.isoformat() if isinstance(value, datetime) else value
        return out


def displayed_status(enabled: bool, paused: bool, latest_execution: str | None) -> str:
    """disabled | paused | pending | running | succeeded | failed — computed, never stored."""
    if not enabled:
        return "disabled"
    if paused:
        return "paused"
    if latest_execution in (None, "pending", "retrying"):
        return "pending"
    if latest_execution == "running":
        return "running"
    if latest_execution == "succeeded":
        return "succeeded"
    return "failed"
