"""Limits enforced across the cluster: queue concurrency, rate limits, concurrency keys.

Overview
    A limit lives in the database, not in a worker's memory, so it holds for the
    whole cluster however many nodes claim:

    * **queue concurrency**: at most N tasks of a queue running at once
      (``tickbase.queue_limits``; :meth:`LimitStore.set_queue_concurrency`);
    * **rate limit**: at most N starts of a task type in any window of the
      given length (``@app.task(rate_limit="10/m")``; also ``/s``, ``/h`` and a
      count of units such as ``"100/5m"``); the excess waits, never dropped;
    * **concurrency key**: at most K running tasks per key
      (``@app.task(concurrency_key="{symbol}", concurrency_limit=1)``, or
      ``defer(concurrency_key="ESZ5")``); K = 1 runs a key's tasks one at a
      time in enqueue order.

How it is enforced
    Task-type limits are stored in ``tickbase.task_limits``; the insert trigger
    marks the new tasks of those types as limited (whoever enqueues them). The
    plain claim never sees limited tasks or limited queues; the worker claims
    them through ``task_claim_limited`` under one cluster-wide advisory lock,
    counting running tasks and recent starts in a snapshot taken after the
    lock: the check and the claim cannot interleave with another node's.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from typing import Any

import orjson
from psycopg_pool import AsyncConnectionPool

from tickbase.db.errors import domain_errors
from tickbase.db.pool import AsyncConn
from tickbase.db.sqlfile import load_queries
from tickbase.errors import ConfigurationError

Q = load_queries("tickbase.queue", "limits.sql")

# pg_advisory_xact_lock key of the limited claim: int8 of b"tickbase:limits"[:8].
LIMITS_LOCK_KEY = int.from_bytes(b"tbLimits", "big", signed=True)

_RATE = re.compile(
    r"^\s*(?P<count>\d+)\s*/\s*(?P<units>\d+(?:\.\d+)?)?\s*"
    r"(?P<unit>s|sec|second|m|min|minute|h|hr|hour)s?\s*$",
    re.IGNORECASE,
)
_UNIT_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``max_starts`` starts in any window of ``window_seconds``."""

    max_starts: int
    window_seconds: float

    @classmethod
    def parse(cls, text: str) -> RateLimit:
        """``"10/m"`` → 10 per 60 s. Units: s, m, h (or sec/min/hour), with an
        optional count (``"100/5m"``). Anything else raises ConfigurationError."""
        match = _RATE.match(text) if isinstance(text, str) else None
        if match is None:
            raise ConfigurationError(
                f"rate limit {text!r} does not parse: write COUNT/UNIT such as '10/s', "
                "'10/m', '100/h' or '100/5m'"
            )
        count = int(match["count"])
        units = float(match["units"]) if match["units"] else 1.0
        if count < 1 or units <= 0:
            raise ConfigurationError(
                f"rate limit {text!r}: the count and the window must be positive"
            )
        return cls(count, units * _UNIT_SECONDS[match["unit"][0].lower()])

    def __str__(self) -> str:
        return f"{self.max_starts}/{self.window_seconds:g}s"


@dataclass(frozen=True, slots=True)
class TaskLimits:
    """The limits of one task type, as stored in ``tickbase.task_limits``."""

    task_type: str
    rate: RateLimit | None = None
    concurrency_key: str | None = None
    concurrency_limit: int = 1

    def __post_init__(self) -> None:
        if type(self.concurrency_limit) is not int or self.concurrency_limit < 1:
            raise ConfigurationError(
                f"task {self.task_type!r}: concurrency_limit must be an integer >= 1, "
                f"got {self.concurrency_limit!r}"
            )
        if self.concurrency_key is not None:
            check_key_template(self.task_type, self.concurrency_key)

    @property
    def limited(self) -> bool:
        return self.rate is not None or self.concurrency_key is not None

    def to_row(self) -> dict[str, Any]:
        return {
            "task_type": self.task_type,
            "rate_max": self.rate.max_starts if self.rate else None,
            "rate_window_seconds": self.rate.window_seconds if self.rate else None,
            "concurrency_key": self.concurrency_key,
            "concurrency_limit": self.concurrency_limit,
        }


def check_key_template(task_type: str, template: str) -> None:
    """A key template may hold literal text and ``{field}`` placeholders only
    (the database formats it too: no format specs, no attribute access)."""
    if not isinstance(template, str) or not template:
        raise ConfigurationError(
            f"task {task_type!r}: concurrency_key must be a non-empty string, got {template!r}"
        )
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ConfigurationError(
            f"task {task_type!r}: concurrency_key {template!r} is not a valid template ({exc})"
        ) from None
    for _, field, spec, conversion in parts:
        if field is not None and (not field.isidentifier() or spec or conversion):
            raise ConfigurationError(
                f"task {task_type!r}: concurrency_key {template!r}: use plain {{field}} "
                f"placeholders naming payload keys (got {{{field}"
                f"{'!' + conversion if conversion else ''}{':' + spec if spec else ''}}})"
            )


class LimitStore:
    """Read and change the cluster's limits.

    Example::

        await app.limits.set_queue_concurrency("marketdata", 2)
        await app.limits.queue_limits()
    """

    def __init__(self, pool: AsyncConnectionPool[AsyncConn]) -> None:
        self.pool = pool

    async def sync_task_limits(self, defined: list[str], limits: list[TaskLimits]) -> list[str]:
        """Store ``limits`` for the task types an app ``defined``; return the types changed."""
        rows = [limit.to_row() for limit in limits if limit.limited]
        async with self.pool.connection() as conn:
            with domain_errors(None):
                cursor = await conn.execute(
                    Q["task_limits_sync"],
                    {"limits": orjson.dumps(rows).decode(), "defined": defined},
                )
            return [row[0] for row in await cursor.fetchall()]

    async def task_limits(self) -> list[dict[str, Any]]:
        """Every stored task-type limit."""
        return await self._rows("task_limits_list")

    async def set_queue_concurrency(self, queue: str, concurrency: int) -> None:
        """At most ``concurrency`` running tasks of ``queue`` in the cluster (>= 1)."""
        check_queue_concurrency(queue, concurrency)
        async with self.pool.connection() as conn:
            with domain_errors({"queue concurrency": concurrency}):
                await conn.execute(
                    Q["queue_limit_set"], {"queue": queue, "concurrency": concurrency}
                )

    async def clear_queue_concurrency(self, queue: str) -> bool:
        """Lift a queue's limit; ``False`` when it had none."""
        async with self.pool.connection() as conn:
            cursor = await conn.execute(Q["queue_limit_clear"], {"queue": queue})
            return await cursor.fetchone() is not None

    async def queue_limits(self) -> list[dict[str, Any]]:
        """Every limited queue with its limit and running tasks now."""
        return await self._rows("queue_limits_list")

    async def concurrency_keys(
        self, *, after: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Concurrency keys running tasks hold now, by key (those after ``after``):
        each with ``running``, its ``concurrency_limit`` and the ``task_types``
        running under it."""
        return await self._rows("concurrency_keys_running", {"after": after, "limit": limit})

    async def _rows(self, query: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        from psycopg.rows import dict_row

        async with self.pool.connection() as conn:
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(Q[query], params)
            return list(await cursor.fetchall())


def check_queue_concurrency(queue: str, concurrency: int) -> None:
    """Refuse a limit that would stop a queue (0) or is not an integer."""
    from tickbase.queue.models import QUEUE_NAME

    if not isinstance(queue, str) or not QUEUE_NAME.match(queue):
        raise ConfigurationError(f"invalid queue name {queue!r}")
    if type(concurrency) is not int or concurrency < 1:
        raise ConfigurationError(
            f"queue {queue!r}: concurrency must be an integer >= 1, got {concurrency!r} "
            "(to stop a queue, stop serving it)"
        )


__all__ = [
    "LIMITS_LOCK_KEY",
    "LimitStore",
    "RateLimit",
    "TaskLimits",
    "check_key_template",
    "check_queue_concurrency",
]
