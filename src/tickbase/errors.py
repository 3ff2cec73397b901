"""The tickbase error tree.

Every error tickbase raises on purpose derives from :class:`TickbaseError`.
Where a builtin fits, the error also subclasses it, so ``except ValueError``
keeps working for callers who do not know tickbase::

    TickbaseError
    ├── ConfigurationError (ValueError)      bad setting, bad CLI flag
    ├── DatabaseError                        server cannot be reached / started
    │   ├── ServerNotRunning                 the embedded server is down and was not to be started
    │   └── MigrationError                   schema older/newer than the code, edited migration
    ├── InvalidValue (ValueError)            a value refused (field, value, reason); nothing stored
    │   ├── InvalidTask                      enqueue refused: payload, queue, priority, run_at, ...
    │   │   └── PayloadTooLarge              payload over PAYLOAD_MAX_BYTES of JSON
    │   ├── InvalidSchedule                  schedule refused: expression, interval, zone, name, ...
    │   ├── InvalidAlert                     alert rule change or webhook refused: URL, threshold, name
    │   ├── InvalidToken (ConfigurationError) token name or role refused
    │   └── InvalidMarketData                a bar or observation refused by the database
    ├── InvalidWorkflow (ValueError)         workflow refused: cycle, unknown step or task type, ...
    ├── InvalidCredentials                   missing, unknown, revoked, expired or forged token/session
    ├── TaskNotFound (LookupError)           no task with that id
    ├── ScheduleNotFound (LookupError)       no schedule with that name
    ├── WorkflowRunNotFound (LookupError)    no workflow run with that id
    ├── AppNotOpen (RuntimeError)            an App used before ``async with app:``
    ├── LeaseLost                            a deposed leader's fenced write was refused
    ├── InvalidTransition                    the task is not in a state that allows the change
    ├── UnknownTaskType (LookupError)        no handler registered for a task type
    ├── TaskFailed                           ``handle.result()`` on a task that failed/was cancelled
    │   └── ResultTimeout (TimeoutError)     ``handle.result(timeout=...)`` ran out of time
    └── market data
        ├── InvalidBar, InvalidBarFile (ValueError)  a bar or a bar file refused
        ├── ResolutionError (ValueError)     a chart resolution the stored bars cannot serve
        └── SourceError                      a source did not deliver: RateLimited, SourceTimeout,
                                             SourceUnavailable, InvalidPayload, SourceSkipped

Messages name the offending value and, where there is one, the fix.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from datetime import date, datetime, time
from typing import Any


class TickbaseError(Exception):
    """Base class of every error tickbase raises on purpose."""


class ConfigurationError(TickbaseError, ValueError):
    """A setting or option has a value tickbase cannot use."""


class DatabaseError(TickbaseError):
    """The database cannot be reached, started or used."""


class ServerNotRunning(DatabaseError):
    """The embedded server of a home is not running, and the caller may not start it.

    Only ``db start``, ``up`` and the role commands start the server; every
    other command says so instead of leaving a server behind as a side effect.
    """

    def __init__(self, home: object) -> None:
        self.home = home
        super().__init__(
            f"the embedded PostgreSQL of {home} is not running "
            "(`tickbase db start` or `tickbase up` starts it)"
        )


class MigrationError(DatabaseError):
    """The schema and the code disagree (missing, newer or edited migrations)."""


class InvalidValue(TickbaseError, ValueError):
    """A value was refused; nothing was stored.

    ``field`` names the offending field, ``value`` holds what was given (None
    when only the database saw it), ``reason`` says what is wrong with it.
    """

    def __init__(self, field: str, value: Any, reason: str) -> None:
        self.field = field
        self.value = value
        self.reason = reason
        super().__init__(f"invalid {field} {_short_repr(value)}: {reason}")


class InvalidTask(InvalidValue):
    """An enqueue request was refused; nothing was stored."""


class PayloadTooLarge(InvalidTask):
    """A payload's JSON is over the size limit on payloads; nothing was stored."""

    def __init__(self, field: str, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        InvalidTask.__init__(
            self,
            field,
            f"<{size} bytes of JSON>",
            f"over the {limit}-byte limit on payloads (PAYLOAD_MAX_BYTES): "
            "pass a reference (a key, a path) to large data instead",
        )


class InvalidSchedule(InvalidValue):
    """A schedule definition was refused; the stored schedules are unchanged."""


class InvalidWorkflow(TickbaseError, ValueError):
    """A workflow definition was refused; nothing was stored."""

    def __init__(self, workflow: str, reason: str) -> None:
        self.workflow = workflow
        self.reason = reason
        super().__init__(f"invalid workflow {workflow!r}: {reason}")


class ScheduleNotFound(TickbaseError, LookupError):
    """No (unremoved) schedule has the given name."""

    def __init__(self, name: str, known: Iterable[str] = ()) -> None:
        self.name = name
        message = f"schedule {name!r} does not exist"
        close = difflib.get_close_matches(name, list(known), n=1)
        if close:
            message += f" (did you mean {close[0]!r}?)"
        super().__init__(message)


class WorkflowRunNotFound(TickbaseError, LookupError):
    """No workflow run has the given id."""

    def __init__(self, run_id: int) -> None:
        self.run_id = run_id
        super().__init__(f"workflow run {run_id} does not exist")


class AppNotOpen(TickbaseError, RuntimeError):
    """An App was used before ``async with app:`` (or ``await app.open()``) or after it closed."""

    def __init__(self) -> None:
        super().__init__("the app is not open: use `async with app:` first")


class LeaseLost(TickbaseError):
    """This node's fenced write was refused: another node holds the lease now.

    Raised inside the leader's transaction, so that nothing of it commits; the
    node stands down and competes for the lease again.
    """

    def __init__(self, holder: str, token: int | None, lease: str = "leader") -> None:
        self.holder = holder
        self.token = token
        self.lease = lease
        super().__init__(f"{holder} no longer holds the {lease} lease (token {token})")


class TaskNotFound(TickbaseError, LookupError):
    """No task has the given id."""

    def __init__(self, task_id: int) -> None:
        self.task_id = task_id
        super().__init__(f"task {task_id} does not exist")


class InvalidTransition(TickbaseError):
    """The task's current state does not allow the requested change."""

    def __init__(self, task_id: int, status: str, action: str) -> None:
        self.task_id = task_id
        self.status = status
        self.action = action
        super().__init__(f"cannot {action} task {task_id}: {_state_phrase(status)}")


_FINAL_PHRASES = {
    "succeeded": "it has already succeeded",
    "failed": "it has already failed",
    "cancelled": "it has already been cancelled",
}


def _state_phrase(status: str) -> str:
    """A task's status as the end of a sentence: "it is running", "it has already failed"."""
    return _FINAL_PHRASES.get(status, f"it is {status}")


class UnknownTaskType(TickbaseError, LookupError):
    """No handler is registered for a task type."""

    def __init__(self, task_type: str, known: Iterable[str] = (), *, reason: str = "") -> None:
        self.task_type = task_type
        message = (
            f"unknown task type {task_type!r}: {reason}"
            if reason
            else f"no handler registered for task type {task_type}"
        )
        close = difflib.get_close_matches(task_type, list(known), n=1)
        if close:
            message += f" (did you mean {close[0]!r}?)"
        super().__init__(message)


class TaskFailed(TickbaseError):
    """The awaited task ended without success.

    ``status`` is ``failed`` or ``cancelled``; ``error`` holds the stored error
    (``{"type", "message", "traceback"}``) when there is one.
    """

    def __init__(self, task_id: int, status: str, error: dict[str, Any] | None) -> None:
        self.task_id = task_id
        self.status = status
        self.error = error
        detail = ""
        if error:
            detail = f": {error.get('type', 'Error')}: {error.get('message', '')}"
        super().__init__(f"task {task_id} {status}{detail}")


class ResultTimeout(TaskFailed, TimeoutError):
    """The task did not finish within the time ``result()`` was given."""

    def __init__(self, task_id: int, timeout: float, status: str, *, what: str = "task") -> None:
        self.timeout = timeout
        TickbaseError.__init__(
            self, f"{what} {task_id} did not finish within {timeout:g} s ({_state_phrase(status)})"
        )
        self.task_id = task_id
        self.status = status
        self.error = None


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """``count`` and ``noun``, in the plural unless ``count`` is 1: "1 field", "6 fields".

    Example::

        plural(len(row), "field")
    """
    return f"{count} {noun if count == 1 else nouns or noun + 's'}"


def _short_repr(value: Any, limit: int = 80) -> str:
    """A value as a message quotes it; times in ISO 8601, not ``datetime.datetime(...)``."""
    if isinstance(value, datetime | date | time):
        return repr(value.isoformat())
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class InvalidAlert(InvalidValue):
    """An alert rule change or webhook was refused; nothing was stored.

    ``field`` names the offending field (``url``, ``threshold``, ``rule``, ...).
    """


class InvalidToken(InvalidValue, ConfigurationError):
    """An API token's name or role was refused; no token was created."""


class InvalidMarketData(InvalidValue):
    """A market-data row (bar, observation) was refused by the database; nothing was stored."""


class InvalidCredentials(TickbaseError):
    """A request's credentials were refused (the gateway answers 401).

    ``reason`` says what was wrong ("session expired", "session signature
    invalid", ...). It never quotes the token or session: they are secrets.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


# ---- market data ---------------------------------------------------------------------

BAD_ROWS_SHOWN = 20  # bad rows listed in one InvalidBarFile message; the count covers all


class InvalidBar(TickbaseError, ValueError):
    """A bar was refused (non-finite price, high below low, ...); no state was changed.

    ``field`` names the offending field, ``value`` holds it, ``open_time`` is the bar's time.

    Example: ``InvalidBar("close", nan, t, "is not a finite number")`` reads
    ``bar 2017-04-19T09:00:00+00:00: close nan is not a finite number``.
    """

    def __init__(self, field: str, value: object, open_time: object, reason: str) -> None:
        self.field = field
        self.value = value
        self.open_time = open_time
        self.reason = reason
        when = open_time.isoformat() if isinstance(open_time, datetime) else repr(open_time)
        super().__init__(f"bar {when}: {field} {value!r} {reason}")


class InvalidBarFile(TickbaseError, ValueError):
    """A bar file was refused; ``problems`` lists ``(line_number, message)`` for every bad row."""

    def __init__(self, source: str, problems: list[tuple[int, str]]) -> None:
        self.source = source
        self.problems = problems
        shown = "\n".join(f"  line {line}: {msg}" for line, msg in problems[:BAD_ROWS_SHOWN])
        more = len(problems) - BAD_ROWS_SHOWN
        tail = f"\n  ... and {more} more" if more > 0 else ""
        super().__init__(f"{source}: {plural(len(problems), 'bad row')}\n{shown}{tail}")


class ResolutionError(TickbaseError, ValueError):
    """A chart resolution that is malformed or that the stored intervals cannot serve."""


class SourceError(TickbaseError):
    """A source did not deliver; ``reason`` says why in words fit for the task's record."""

    outcome = "failed"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RateLimited(SourceError):
    """HTTP 429: ``retry_after`` seconds from the header, ``None`` when it had none."""

    outcome = "rate_limited"

    def __init__(self, reason: str, retry_after: float | None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class SourceTimeout(SourceError):
    """No answer in time."""

    outcome = "timeout"


class SourceUnavailable(SourceError):
    """Refused connection, DNS failure, HTTP 5xx or another status that is not an answer."""

    outcome = "unavailable"


class InvalidPayload(SourceError):
    """The source answered with something that is not valid data (refused whole, not stored)."""

    outcome = "invalid"


class SourceSkipped(SourceError):
    """The source cannot be asked at all (no API key configured)."""

    outcome = "skipped"
