"""Which tasks a listing or a bulk action means: :class:`TaskFilter`.

Overview
    A filter combines (AND) optional conditions on a task's status, queue,
    type, node, creation time and the JSON of its payload or result. A JSON
    condition is written as a user types it in the dashboard or the API:
    ``payload.symbol = BTCUSDT``, ``result.bars = 0``, ``payload.opts.fast =
    true``. The value is JSON when it parses as JSON (``0``, ``true``,
    ``null``, ``"0"``), else a string. Conditions on one document become one
    containment test (``payload @> '{"symbol": "BTCUSDT"}'``), passed to the
    database as a parameter: nothing typed by a user ever becomes SQL text.

Failure cases
    A condition that is not ``payload.<path> = <value>`` or
    ``result.<path> = <value>``, a path step that is empty or over 100
    characters, more than 8 conditions, an unknown status, or a time range
    whose end is before its start is refused with
    :class:`~tickbase.errors.InvalidTask` naming the condition.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tickbase.errors import InvalidTask
from tickbase.types import TaskStatus

MAX_CONDITIONS = 8
_CONDITION = re.compile(r"^\s*(?P<root>payload|result)\.(?P<path>[^=]+?)\s*=\s*(?P<value>.*?)\s*$")
_STEP = re.compile(r"^[^\s.]{1,100}$")


@dataclass(frozen=True, slots=True)
class JsonCondition:
    """``root.path = value``: the task's ``root`` JSON holds ``value`` at ``path``."""

    root: str
    path: tuple[str, ...]
    value: Any

    @classmethod
    def parse(cls, text: str) -> JsonCondition:
        """Read ``payload.symbol = BTCUSDT`` (see the module)."""
        match = _CONDITION.match(text)
        if match is None:
            raise InvalidTask(
                "filter",
                text,
                "write a JSON condition as payload.<path> = <value> or result.<path> = <value>",
            )
        path = tuple(match["path"].strip().split("."))
        for step in path:
            if not _STEP.match(step):
                raise InvalidTask(
                    "filter", text, f"path step {step!r} must be 1 to 100 characters, no spaces"
                )
        raw = match["value"]
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        return cls(match["root"], path, value)

    def document(self) -> dict[str, Any]:
        """The JSON object that contains exactly this condition."""
        nested: Any = self.value
        for step in reversed(self.path):
            nested = {step: nested}
        result: dict[str, Any] = nested
        return result

    def __str__(self) -> str:
        return f"{self.root}.{'.'.join(self.path)} = {json.dumps(self.value)}"


def _merge(into: dict[str, Any], part: dict[str, Any]) -> None:
    for key, value in part.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


@dataclass(frozen=True, slots=True)
class TaskFilter:
    """The tasks a listing shows or a bulk action acts on (every field optional).

    Example::

        TaskFilter(status="failed", where=(JsonCondition.parse("payload.symbol = BTCUSDT"),))
    """

    status: str | None = None
    queue: str | None = None
    task_type: str | None = None
    node_id: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    where: tuple[JsonCondition, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.status is not None and self.status not in TaskStatus.__members__.values():
            raise InvalidTask(
                "status filter",
                self.status,
                f"use one of {', '.join(s.value for s in TaskStatus)}",
            )
        if len(self.where) > MAX_CONDITIONS:
            raise InvalidTask(
                "filter", len(self.where), f"at most {MAX_CONDITIONS} JSON conditions"
            )
        after, before = self.created_after, self.created_before
        for name, value in (("createdAfter", after), ("createdBefore", before)):
            if value is not None and value.tzinfo is None:
                raise InvalidTask(name, value.isoformat(), "give a time zone (e.g. ...Z)")
        if after is not None and before is not None and before <= after:
            raise InvalidTask("createdBefore", before.isoformat(), "must be after createdAfter")

    @classmethod
    def parse(cls, *, where: list[str] | tuple[str, ...] = (), **fields: Any) -> TaskFilter:
        """A filter from the API's or the dashboard's strings (JSON conditions as typed)."""
        return cls(where=tuple(JsonCondition.parse(text) for text in where), **fields)

    def _contained(self, root: str) -> str | None:
        document: dict[str, Any] = {}
        for condition in self.where:
            if condition.root == root:
                _merge(document, condition.document())
        return json.dumps(document) if document else None

    def params(self) -> dict[str, Any]:
        """The named parameters of the statements that take a filter."""
        return {
            "status": self.status,
            "queue": self.queue,
            "task_type": self.task_type,
            "node_id": self.node_id,
            "created_after": self.created_after,
            "created_before": self.created_before,
            "payload_contains": self._contained("payload"),
            "result_contains": self._contained("result"),
        }

    def to_dict(self) -> dict[str, Any]:
        """The filter as the API writes it (camelCase; for the audit row)."""
        out: dict[str, Any] = {
            "status": self.status,
            "queue": self.queue,
            "taskType": self.task_type,
            "nodeId": self.node_id,
            "createdAfter": self.created_after.isoformat() if self.created_after else None,
            "createdBefore": self.created_before.isoformat() if self.created_before else None,
            "where": [str(c) for c in self.where],
        }
        return {k: v for k, v in out.items() if v not in (None, [])}


__all__ = ["MAX_CONDITIONS", "JsonCondition", "TaskFilter"]
