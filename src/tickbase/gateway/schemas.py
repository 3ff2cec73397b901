"""The gateway's JSON shapes: camelCase outside, snake_case inside.

Every model derives from :class:`CamelModel`, whose alias generator turns
``task_type`` into ``taskType`` at the edge only: Python code (and the
database) keep snake_case names, and the conversion happens once, here.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from tickbase.queue.models import KEY_MAX, holds_nul

if TYPE_CHECKING:
    from tickbase.workflows.api import WorkflowRun

REQUEST_ID_PATTERN = r"^[A-Za-z0-9_.:\-]{1,128}$"
# Names that appear in paths (schedules, workflows) keep to what a path segment
# can carry without escaping surprises.
NAME_PATTERN = r"^[A-Za-z0-9_.:\- ]{1,200}$"
QUEUE_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
SECONDS_MAX = 10 * 366 * 86400.0  # ten years: longer is a typo (and overflows dates)
INT4_MAX = 2**31 - 1


class CamelModel(BaseModel):
    """Base model: camelCase JSON, snake_case attributes."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class InModel(CamelModel):
    """A request body: unknown fields are refused (a typo is an error, not ignored),
    types are strict (``"5"`` or ``true`` is not a number), and no text may hold
    U+0000 (PostgreSQL text cannot)."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", strict=True
    )

    @model_validator(mode="after")
    def _no_nul(self) -> InModel:
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, list):
                value = [v.model_dump() if isinstance(v, BaseModel) else v for v in value]
            if holds_nul(value):
                raise ValueError(f"{to_camel(name)} contains the character U+0000")
        return self


# ---- errors --------------------------------------------------------------------


class ErrorBody(CamelModel):
    code: str = Field(examples=["NOT_FOUND"])
    message: str
    details: Any = None


class ErrorResponse(CamelModel):
    """The one error shape of the HTTP API (and of WebSocket ``error`` frames)."""

    error: ErrorBody


# ---- tasks ---------------------------------------------------------------------


class TaskSubmit(InModel):
    """A task to enqueue (also the params of the WebSocket ``tasks.submit``).

    The options of ``App.defer`` / ``EnqueueRequest``: what is left out comes
    from the task type's definition (queue, priority, attempts, retry delay,
    timeout). ``runAt`` and ``delaySeconds`` exclude each other.
    """

    task_type: str = Field(min_length=1, max_length=200, examples=["tickbase.echo"])
    payload: dict[str, Any] = Field(default_factory=dict)
    queue: str | None = Field(default=None, pattern=QUEUE_PATTERN)
    priority: int | None = Field(default=None, ge=0, le=1000)
    delay_seconds: float | None = Field(default=None, ge=0, le=366 * 86400)
    run_at: datetime | None = Field(
        default=None, description="When the task becomes due (ISO 8601 with a time zone)."
    )
    max_attempts: int | None = Field(default=None, ge=1, le=1000)
    retry_delay: float | None = Field(
        default=None, ge=0, le=SECONDS_MAX, description="Seconds (exponential backoff base)."
    )
    timeout: float | None = Field(
        default=None, gt=0, le=SECONDS_MAX, description="Seconds per attempt."
    )
    dedupe_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=KEY_MAX,
        description="While a task with this key is unfinished, no other may hold it.",
    )
    request_id: str | None = Field(default=None, pattern=REQUEST_ID_PATTERN)

    @field_validator("run_at", mode="before")
    @classmethod
    def _parse_run_at(cls, value: Any) -> Any:
        # Strict mode takes datetimes only; JSON carries them as ISO 8601 text.
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value)
            except ValueError:
                raise ValueError("must be an ISO 8601 date and time") from None
        if isinstance(value, datetime) and value.tzinfo is None:
            raise ValueError("must carry a time zone (for example 2030-01-01T00:00:00Z)")
        return value

    @model_validator(mode="after")
    def _one_start(self) -> TaskSubmit:
        if self.run_at is not None and self.delay_seconds is not None:
            raise ValueError("give runAt or delaySeconds, not both")
        return self


class TaskOut(CamelModel):
    id: int
    task_type: str
    queue: str
    priority: int
    status: str
    payload: Any
    result: Any = None
    error: Any = None
    attempts: int
    max_attempts: int
    retry_delay: float
    timeout: float | None = None
    run_at: datetime
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    node_id: str | None = None
    request_id: str | None = None
    dedupe_key: str | None = None
    concurrency_key: str | None = None
    schedule_id: int | None = None
    workflow_run_id: int | None = None
    step: str | None = None
    progress: Any = None
    """What the handler last reported with ``ctx.progress(...)`` (null: nothing)."""


class TaskDetailOut(TaskOut):
    """One task, and why it waits when no live worker can claim it."""

    waiting: str | None = None
    """For a pending or retrying task no live worker can claim: the reason
    (e.g. "no live worker handles type t.b"); else null."""


class TaskPage(CamelModel):
    items: list[TaskOut]
    next_cursor: str | None = None


class Page(CamelModel):
    """A page of a listing; pass ``nextCursor`` as ``cursor`` for the next one."""

    items: list[dict[str, Any]]
    next_cursor: str | None = None


class SessionOut(CamelModel):
    """A short-lived signed session for a browser (``?session=`` on /ws and HTTP)."""

    session: str
    expires_at: datetime
    role: str


class RequestState(CamelModel):
    """What the WebSocket would have sent for a request: its status, then its outcome."""

    request_id: str
    action: str
    status: Literal["pending", "running", "succeeded", "failed", "cancelled"]
    data: Any = None
    error: ErrorBody | None = None


# ---- schedules -----------------------------------------------------------------


EVERY_SECONDS: Any = Field(
    default=None,
    ge=0.001,
    le=SECONDS_MAX,
    description="Deprecated: the old name of intervalSeconds (still accepted).",
    json_schema_extra={"deprecated": True},
)


def _merge_every(model: ScheduleCreate | ScheduleUpdate) -> None:
    """Move the deprecated ``everySeconds`` into ``intervalSeconds`` (not both)."""
    if "every_seconds" not in model.model_fields_set:
        return
    if "interval_seconds" in model.model_fields_set:
        raise ValueError("give intervalSeconds (everySeconds is its old name), not both")
    model.interval_seconds = model.every_seconds
    model.every_seconds = None
    model.model_fields_set.discard("every_seconds")
    model.model_fields_set.add("interval_seconds")


class ScheduleCreate(InModel):
    name: str = Field(pattern=NAME_PATTERN)
    task_type: str = Field(min_length=1, max_length=200)
    cron: str | None = Field(default=None, max_length=200)
    interval_seconds: float | None = Field(default=None, ge=0.001, le=SECONDS_MAX)
    every_seconds: float | None = EVERY_SECONDS
    manual: bool = False
    timezone: str = Field(default="UTC", max_length=100)
    payload: dict[str, Any] = Field(default_factory=dict)
    queue: str = Field(default="default", pattern=QUEUE_PATTERN)
    priority: int = Field(default=0, ge=0, le=1000)
    max_retries: int = Field(default=0, ge=0, le=1000)
    retry_interval: float = Field(default=1.0, ge=0, le=SECONDS_MAX)
    timeout: float | None = Field(default=None, gt=0, le=SECONDS_MAX)
    misfire_grace_seconds: float = Field(default=60.0, ge=0, le=SECONDS_MAX)
    coalesce: bool = False
    max_instances: int = Field(default=1, ge=1, le=INT4_MAX)
    enabled: bool = True
    description: str | None = Field(default=None, max_length=2000)

    @model_validator(mode="after")
    def _old_interval_name(self) -> ScheduleCreate:
        _merge_every(self)
        return self


class ScheduleUpdate(InModel):
    """Fields to change; leave out what stays. Only ``cron``, ``intervalSeconds``,
    ``timeout`` and ``description`` may be set to null."""

    cron: str | None = Field(default=None, max_length=200)
    interval_seconds: float | None = Field(default=None, ge=0.001, le=SECONDS_MAX)
    every_seconds: float | None = EVERY_SECONDS
    timezone: str | None = Field(default=None, max_length=100)
    payload: dict[str, Any] | None = None
    queue: str | None = Field(default=None, pattern=QUEUE_PATTERN)
    priority: int | None = Field(default=None, ge=0, le=1000)
    max_retries: int | None = Field(default=None, ge=0, le=1000)
    retry_interval: float | None = Field(default=None, ge=0, le=SECONDS_MAX)
    timeout: float | None = Field(default=None, gt=0, le=SECONDS_MAX)
    misfire_grace_seconds: float | None = Field(default=None, ge=0, le=SECONDS_MAX)
    coalesce: bool | None = None
    max_instances: int | None = Field(default=None, ge=1, le=INT4_MAX)
    description: str | None = Field(default=None, max_length=2000)

    @field_validator(
        "timezone",
        "payload",
        "queue",
        "priority",
        "max_retries",
        "retry_interval",
        "misfire_grace_seconds",
        "coalesce",
        "max_instances",
        mode="before",
    )
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("cannot be null: leave the field out to keep its value")
        return value

    @model_validator(mode="after")
    def _old_interval_name(self) -> ScheduleUpdate:
        _merge_every(self)
        return self


class ScheduleOut(CamelModel):
    id: int
    name: str
    task_type: str
    kind: str
    cron: str | None = None
    interval_seconds: float | None = None
    timezone: str
    payload: Any
    queue: str
    priority: int
    max_retries: int
    retry_interval: float
    timeout: float | None = None
    misfire_grace_seconds: float
    coalesce: bool
    max_instances: int
    enabled: bool
    paused: bool
    description: str | None = None
    origin: str
    status: str
    next_fire_at: datetime | None = None
    last_fire_at: datetime | None = None
    created_at: datetime
    updated_at: datetime


class SchedulePreviewIn(InModel):
    """A schedule's timing to try out: a cron expression or an interval, and a zone."""

    cron: str | None = Field(default=None, max_length=200)
    interval_seconds: float | None = Field(default=None, ge=0.001, le=SECONDS_MAX)
    timezone: str = Field(default="UTC", max_length=100)


class SchedulePreviewOut(CamelModel):
    """The next fires a schedule with this timing would have, oldest first (UTC)."""

    kind: str
    timezone: str
    fires: list[datetime]


class TriggerIn(InModel):
    """Optional body of a manual fire: with a ``requestId`` it fires once per id."""

    request_id: str | None = Field(default=None, pattern=REQUEST_ID_PATTERN)


class TriggerOut(CamelModel):
    task_id: int
    fire_at: datetime


# ---- workflows -----------------------------------------------------------------


class StepIn(InModel):
    name: str = Field(min_length=1, max_length=200)
    task_type: str = Field(min_length=1, max_length=200)
    after: list[str] = Field(default_factory=list)
    payload: dict[str, Any] = Field(default_factory=dict)


class WorkflowIn(InModel):
    name: str = Field(pattern=NAME_PATTERN)
    mode: Literal["serial", "parallel"] = "serial"
    on_failure: Literal["stop", "continue"] = "stop"
    max_parallel: int | None = Field(default=None, ge=1, le=INT4_MAX)
    steps: list[StepIn] = Field(min_length=1, max_length=10_000)


class StepOptions(CamelModel):
    """Enqueue options a step's task carries over from its task type."""

    queue: str | None = None
    priority: int | None = None
    max_attempts: int | None = None
    retry_delay: float | None = None
    timeout: float | None = None


class StepDefinition(CamelModel):
    name: str
    task_type: str
    after: list[str] = Field(default_factory=list)
    payload: dict[str, Any] = Field(default_factory=dict)
    options: StepOptions = Field(default_factory=StepOptions)


class WorkflowOut(CamelModel):
    name: str
    mode: str
    on_failure: str
    max_parallel: int | None = None
    steps: list[StepDefinition]
    created_at: datetime | None = None
    updated_at: datetime | None = None


class ValidationOut(CamelModel):
    valid: bool
    order: list[str]


class StepOut(CamelModel):
    name: str
    status: str
    task_id: int | None = None
    task_status: str | None = None
    result: Any = None
    attempts: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration: float | None = None
    task_type: str | None = None
    after: list[str] = Field(default_factory=list)
    """The steps this one runs after (the edges of the run's DAG)."""


class RunOut(CamelModel):
    id: int
    workflow: str
    status: str
    steps: list[StepOut] = Field(default_factory=list)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    mode: str | None = None
    on_failure: str | None = None
    max_parallel: int | None = None


def run_out(run: WorkflowRun) -> RunOut:
    """A workflow run as the API (and ``tickbase workflows runs --json``) shows it."""
    return RunOut(
        id=run.id,
        workflow=run.workflow or "",
        status=run.status,
        started_at=run.created_at,
        finished_at=run.finished_at,
        mode=run.mode,
        on_failure=run.on_failure,
        max_parallel=run.max_parallel,
        steps=[StepOut(**asdict(step), duration=step.duration) for step in run.steps.values()],
    )


# ---- cluster -------------------------------------------------------------------


class NodeMetrics(CamelModel):
    running_tasks: int | None = None
    cpu_percent: float | None = None
    rss_bytes: int | None = None
    threads: int | None = None
    processed: int | None = None


class NodeOut(CamelModel):
    node_id: str
    host: str
    pid: int
    roles: list[str]
    queues: list[str] | None = None
    version: str
    started_at: datetime
    heartbeat_at: datetime
    heartbeat_interval: float
    heartbeat_age_seconds: float | None = None
    """Seconds since the last heartbeat, by the database's clock."""
    metrics: NodeMetrics
    alive: bool
    leader: bool


class AlertOut(CamelModel):
    id: int
    rule: str
    kind: str
    subject: str
    state: str
    value: float | None = None
    message: str
    detail: Any = None
    fired_at: datetime
    resolved_at: datetime | None = None

    @field_validator("detail")
    @classmethod
    def _camel_detail(cls, value: Any) -> Any:
        # Built by the alert rules (snake_case in SQL); camelCase like the rest.
        if isinstance(value, dict):
            return {to_camel(key): item for key, item in value.items()}
        return value


class AlertPage(CamelModel):
    items: list[AlertOut]
    next_cursor: str | None = None


class Execution(CamelModel):
    """One execution (task) of a schedule."""

    id: int
    fire_at: datetime
    status: str
    attempts: int
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration: float | None = None
    result: Any = None
    error: Any = None
    manual: bool = False


class ExecutionPage(CamelModel):
    items: list[Execution]
    next_cursor: str | None = None


class ScheduleStats(CamelModel):
    pending: int
    running: int
    retrying: int
    succeeded: int
    failed: int
    cancelled: int
    avg_duration: float | None = None
    p95_duration: float | None = None
    last_fire_at: datetime | None = None
    next_fire_at: datetime | None = None
    status: str


class RunSummary(CamelModel):
    id: int
    workflow_name: str
    mode: str
    on_failure: str
    max_parallel: int | None = None
    status: str
    schedule_id: int | None = None
    fire_at: datetime | None = None
    created_at: datetime
    finished_at: datetime | None = None


class RunPage(CamelModel):
    items: list[RunSummary]
    next_cursor: str | None = None


class QueueCount(CamelModel):
    queue: str
    status: str
    count: int


class Timing(CamelModel):
    count: int
    p50: float | None = None
    p95: float | None = None
    max: float | None = None


class UnservedCount(CamelModel):
    """Due tasks of one type and queue that no live worker handles."""

    task_type: str
    queue: str
    count: int


class StatsOut(CamelModel):
    """The cluster's figures (as ``tickbase stats``)."""

    tasks: list[QueueCount]
    tasks_estimated: bool = False
    """True when the finished tasks' counts are estimated from a sample (a table
    over 200,000 rows); waiting and running counts are always exact."""
    finished_last_minute: int
    failed_last_hour: int
    backlog: int
    no_worker: int = 0
    """Due tasks that no live worker can claim (see ``noWorkerByType``)."""
    no_worker_by_type: list[UnservedCount] = Field(default_factory=list)
    oldest_due_seconds: float | None = None
    schedule_lag_seconds: float | None = None
    nodes_alive: int
    leader: str | None = None
    throughput_per_s: float
    latency_seconds: Timing
    duration_seconds: Timing


class HealthOut(CamelModel):
    status: str
    details: dict[str, Any] = Field(default_factory=dict)
