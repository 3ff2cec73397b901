"""Task rows as Python values, and the validated form of an enqueue request."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from enum import StrEnum
from typing import Any

import orjson

from tickbase.errors import InvalidTask, PayloadTooLarge
from tickbase.types import TaskStatus

QUEUE_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,64}\Z")  # \Z: "$" admits a final newline
PRIORITY_MIN, PRIORITY_MAX = 0, 1000
TASK_TYPE_MAX = 200
KEY_MAX = 200
DEFAULT_QUEUE = "default"
# A payload is a task's arguments, stored in its row and read at every claim: a
# few KiB normally. Large data (bars, files) belongs in tables or files that
# the payload names. Results have their own limit (TICKBASE_RESULT_MAX_BYTES).
PAYLOAD_MAX_BYTES = 512 * 1024

_strict_json = json.JSONEncoder(
    allow_nan=False, ensure_ascii=False, separators=(",", ":"), check_circular=True
).encode
# No datetimes, dataclasses or subclasses turned silently into strings/objects:
# a payload must be plain JSON, so that what a handler receives is what was sent.
_ORJSON_OPTIONS = (
    orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)


def encode_json(value: Any, field_name: str) -> str:
    """JSON text of ``value``, or :class:`InvalidTask` naming what JSON cannot hold.

    NaN and infinities are refused (JSON has no such numbers; silently storing
    ``null`` would corrupt the value), as are non-string keys, datetimes and any
    object that is not a dict, list, str, int, float, bool or None.
    """
    try:
        text = orjson.dumps(value, option=_ORJSON_OPTIONS)
        if b"null" in text:
            # orjson writes NaN/Infinity as null; only the strict encoder can tell
            # a real None from a non-finite float, so it checks these rare cases.
            _strict_json(value)
    except (TypeError, ValueError) as exc:
        raise InvalidTask(field_name, value, f"not JSON-encodable ({exc})") from None
    if b"\\u0000" in text and holds_nul(value):  # the escape may be literal text
        raise InvalidTask(field_name, value, "contains the character U+0000 (PostgreSQL cannot)")
    return text.decode()


def encode_payload(value: Any, field_name: str = "payload") -> str:
    """:func:`encode_json` of a payload, refused past :data:`PAYLOAD_MAX_BYTES`.

    Every producer (enqueue, schedules, workflow steps) encodes payloads
    here, so none can store what another would refuse.
    """
    text = encode_json(value, field_name)
    if len(text) > PAYLOAD_MAX_BYTES // 4 and len(text.encode()) > PAYLOAD_MAX_BYTES:
        raise PayloadTooLarge(field_name, len(text.encode()), PAYLOAD_MAX_BYTES)
    return text


def holds_nul(value: Any) -> bool:
    """Whether a string anywhere in ``value`` (keys too) holds U+0000, which
    PostgreSQL text and jsonb cannot store."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(holds_nul(k) or holds_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(holds_nul(v) for v in value)
    return False


@dataclass(slots=True)
class EnqueueRequest:
    """One task to enqueue, validated on construction.

    Example::

        EnqueueRequest("tickbase.echo", {"x": 1}, queue="default", priority=0)
    """

    task_type: str
    payload: dict[str, Any] = field(default_factory=dict)
    queue: str = DEFAULT_QUEUE
    priority: int = 0
    run_at: datetime | None = None
    delay: float | None = None
    max_attempts: int = 1
    retry_delay: float = 1.0
    timeout: float | None = None
    dedupe_key: str | None = None
    request_id: str | None = None
    concurrency_key: str | None = None
    concurrency_limit: int | None = None
    payload_json: str = field(init=False, repr=False, default="")

    def __post_init__(self) -> None:
        # Checks are ordered for the common case (plain defaults): a batch of
        # 10,000 requests is validated in Python before one statement stores it.
        try:
            known = self.task_type in _VALID_NAMES and self.queue in _VALID_QUEUES
        except TypeError:  # unhashable (a list, a dict): not a name
            known = False
        if not known:
            self._check_names()
        priority = self.priority
        if type(priority) is not int or not PRIORITY_MIN <= priority <= PRIORITY_MAX:
            raise InvalidTask(
                "priority",
                priority,
                f"must be an integer from {PRIORITY_MIN} (runs first) to {PRIORITY_MAX}",
            )
        if not isinstance(self.payload, dict):
            raise InvalidTask("payload", self.payload, "must be a JSON object (a dict of kwargs)")
        self.payload_json = encode_payload(self.payload)
        if self.run_at is not None or self.delay is not None:
            self._check_timing()
        if type(self.max_attempts) is not int or self.max_attempts < 1:
            raise InvalidTask("max_attempts", self.max_attempts, "must be an integer >= 1")
        if self.retry_delay != 1.0 or type(self.retry_delay) is not float:
            _check_number("retry_delay", self.retry_delay, minimum=0)
        if self.timeout is not None:
            _check_number("timeout", self.timeout, minimum=0, exclusive=True)
        if (
            self.dedupe_key is not None
            or self.request_id is not None
            or self.concurrency_key is not None
        ):
            for name in ("dedupe_key", "request_id", "concurrency_key"):
                value = getattr(self, name)
                if value is not None and (
                    not isinstance(value, str) or not 0 < len(value) <= KEY_MAX
                ):
                    raise InvalidTask(name, value, f"must be a string of 1 to {KEY_MAX} characters")
        if self.concurrency_limit is not None and (
            type(self.concurrency_limit) is not int or self.concurrency_limit < 1
        ):
            raise InvalidTask(
                "concurrency_limit",
                self.concurrency_limit,
                "must be an integer >= 1 (tasks of one key running at once)",
            )

    def _check_names(self) -> None:
        if not isinstance(self.task_type, str) or not 0 < len(self.task_type) <= TASK_TYPE_MAX:
            raise InvalidTask(
                "task type", self.task_type, f"must be a string of 1 to {TASK_TYPE_MAX} characters"
            )
        if not isinstance(self.queue, str) or not QUEUE_NAME.match(self.queue):
            raise InvalidTask(
                "queue name", self.queue, "use 1 to 64 letters, digits or the characters _ . : -"
            )
        _remember(self.task_type, self.queue)

    def _check_timing(self) -> None:
        if self.run_at is not None:
            if not isinstance(self.run_at, datetime):
                raise InvalidTask("run_at", self.run_at, "must be a datetime")
            if self.run_at.tzinfo is None or self.run_at.utcoffset() is None:
                raise InvalidTask(
                    "run_at", self.run_at, "must be timezone-aware (e.g. datetime.now(UTC))"
                )
            if self.delay is not None:
                raise InvalidTask("delay", self.delay, "give either run_at or delay, not both")
        if self.delay is not None:
            _check_number("delay", self.delay, minimum=0)


# Keyword arguments of an enqueue beside the task type and its payload: what a
# caller may pass to ``defer`` (see tickbase.tasks.TaskFunction.request).
ENQUEUE_OPTIONS = frozenset(
    f.name for f in fields(EnqueueRequest) if f.init and f.name not in ("task_type", "payload")
)


@dataclass(frozen=True, slots=True)
class TaskOptions:
    """How a task type's tasks run unless one enqueue says otherwise.

    The one definition of the options a handler declares (``@app.task``), a
    node publishes for the types it handles, a workflow step stores and the
    gateway fills in; every field is an :class:`EnqueueRequest` option of the
    same name and default.

    Example::

        TaskOptions(queue="marketdata", max_attempts=3).as_dict()
    """

    queue: str = DEFAULT_QUEUE
    priority: int = 0
    max_attempts: int = 1
    retry_delay: float = 1.0
    timeout: float | None = None

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> TaskOptions:
        """The options named in ``values`` (other keys ignored; a missing or
        null option takes its default)."""
        return cls(**{k: values[k] for k in TASK_OPTIONS if values.get(k) is not None})

    def as_dict(self) -> dict[str, Any]:
        """The options by name, in declaration order (as nodes publish them)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


TASK_OPTIONS = frozenset(f.name for f in fields(TaskOptions))


# Names already validated: most batches repeat a few task types and queues.
_VALID_NAMES: set[str] = set()
_VALID_QUEUES: set[str] = {DEFAULT_QUEUE}
_VALID_CACHE_MAX = 10_000


def _remember(task_type: str, queue: str) -> None:
    if len(_VALID_NAMES) < _VALID_CACHE_MAX:
        _VALID_NAMES.add(task_type)
        _VALID_QUEUES.add(queue)


def _check_number(name: str, value: Any, *, minimum: float, exclusive: bool = False) -> None:
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not math.isfinite(value)
        or value < minimum
        or (exclusive and value == minimum)
    ):
        relation = ">" if exclusive else ">="
        raise InvalidTask(name, value, f"must be a finite number {relation} {minimum:g}")


class OutcomeKind(StrEnum):
    """How one execution ended, as a worker reports it. The status each leads to
    is ``tickbase.outcome_status`` (migration 0013); a test holds the two together."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    RETRY = "retry"
    FAILED_FINAL = "failed_final"
    CANCELLED = "cancelled"
    SNOOZED = "snoozed"
    REQUEUED = "requeued"


@dataclass(frozen=True, slots=True)
class Outcome:
    """One execution's end, reported by a worker (``result``/``error``: JSON text).

    ``delay``: the seconds until the next run a :class:`~tickbase.Retry` or
    :class:`~tickbase.Snooze` asked for (None: the retry backoff).
    """

    task_id: int
    attempt: int
    kind: OutcomeKind
    result: str | None = None
    error: str | None = None
    delay: float | None = None


@dataclass(frozen=True, slots=True)
class LinkedTask:
    """A task that stands for something another block records: a schedule's fire
    (``schedule_id``, ``fire_at``) or a workflow run's step (``workflow_run_id``,
    ``step``, and its dependencies' results as ``inputs``).

    Of ``request`` only the task type, payload and run options (queue, priority,
    max_attempts, retry_delay, timeout) apply: a linked task runs when enqueued.
    ``task_id`` is an id the caller reserved from ``tickbase.tasks_id_seq``.
    """

    request: EnqueueRequest
    schedule_id: int | None = None
    fire_at: datetime | None = None
    workflow_run_id: int | None = None
    step: str | None = None
    inputs: dict[str, Any] | None = None
    task_id: int | None = None


@dataclass(frozen=True, slots=True)
class Task:
    """A row of ``tickbase.tasks``."""

    id: int
    task_type: str
    queue: str
    priority: int
    status: TaskStatus
    payload: dict[str, Any]
    result: Any
    error: dict[str, Any] | None
    attempts: int
    max_attempts: int
    retry_delay: float
    timeout: float | None
    run_at: datetime
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    lease_expires_at: datetime | None
    node_id: str | None
    request_id: str | None
    dedupe_key: str | None
    concurrency_key: str | None
    schedule_id: int | None
    fire_at: datetime | None
    workflow_run_id: int | None
    step: str | None
    progress: Any
    cancel_requested: bool
    inputs: dict[str, Any] | None = None
    concurrency_limit: int | None = None
    rate_limited: bool = False

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Task:
        """Build from a dict row of ``SELECT * FROM tickbase.tasks``."""
        return cls(
            **{name: row[name] for name in _TASK_FIELDS if name != "status"},
            status=TaskStatus(row["status"]),
        )

    @property
    def duration(self) -> float | None:
        """Seconds from start to finish, when both are known."""
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (times as ISO 8601)."""
        out: dict[str, Any] = {}
        for name in _TASK_FIELDS:
            value = getattr(self, name)
            out[name] = value.isoformat() if isinstance(value, datetime) else value
        out["status"] = str(self.status)
        return out


@dataclass(frozen=True, slots=True)
class TaskEvent:
    """A row of ``tickbase.task_events``."""

    task_id: int
    at: datetime
    event: str
    node_id: str | None
    detail: Any


@dataclass(frozen=True, slots=True)
class ClaimedTask:
    """What a worker needs to run one claimed task."""

    id: int
    task_type: str
    payload: dict[str, Any]
    attempt: int
    max_attempts: int
    timeout: float | None
    workflow_run_id: int | None = None
    step: str | None = None
    inputs: dict[str, Any] | None = None


_TASK_FIELDS = tuple(name for name in Task.__dataclass_fields__)
