"""A handler steers its own task: retry it, snooze it, or cancel it.

Raise (or return) one of these from a handler::

    @app.task(retries=5)
    async def fetch_bars(symbol: str) -> None:
        if exchange_in_maintenance():
            raise tickbase.Snooze(300)            # again in 5 min; no attempt used
        if rate_limited():
            raise tickbase.Retry(delay=60)        # counts an attempt, waits 60 s
        if delisted(symbol):
            raise tickbase.Cancel(f"{symbol} is delisted")  # final: cancelled

Each is recorded in the task's events (``snoozed``, ``retry_requested``,
``cancelled``) with its reason, and shown by ``tickbase tasks show``. As
River's ``JobSnooze``/``JobCancel`` and pgqueuer's ``RetryRequested``: they are
decisions of the handler's code, not failures of it.
"""

from __future__ import annotations

import math

from tickbase.errors import InvalidTask

# A snooze or retry delay beyond this is more likely a unit mistake (ms for s).
MAX_DELAY_SECONDS = 366 * 24 * 3600.0


def _delay(name: str, value: float | None, *, optional: bool) -> float | None:
    if value is None and optional:
        return None
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not math.isfinite(value)
        or not 0 <= value <= MAX_DELAY_SECONDS
    ):
        raise InvalidTask(name, value, "must be a number of seconds from 0 to one year")
    return float(value)


class TaskControl(Exception):
    """Base of the decisions a handler may raise or return.

    ``reason`` is stored with the task (its error field and the event's detail).
    """

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason)
        self.reason = reason

    def detail(self) -> dict[str, object]:
        """What is stored: the decision, its reason and its delay (if any)."""
        return {"type": type(self).__name__, "message": self.reason}


class Retry(TaskControl):
    """Run the task again after ``delay`` seconds (None: the retry backoff).

    The attempt counts: with no attempts left the task fails, with this reason.
    """

    def __init__(self, delay: float | None = None, reason: str = "") -> None:
        super().__init__(reason or "the handler asked to be retried")
        self.delay = _delay("retry delay", delay, optional=True)

    def detail(self) -> dict[str, object]:
        return {**super().detail(), "delay": self.delay}


class Snooze(TaskControl):
    """Run the task again in ``seconds``, without using an attempt."""

    def __init__(self, seconds: float, reason: str = "") -> None:
        super().__init__(reason or f"snoozed for {seconds:g} s")
        self.seconds = _delay("snooze seconds", seconds, optional=False)

    def detail(self) -> dict[str, object]:
        return {**super().detail(), "seconds": self.seconds}


class Cancel(TaskControl):
    """End the task as cancelled (final: it never runs again)."""

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason or "the handler cancelled it")
