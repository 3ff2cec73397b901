"""One evaluation pass over the enabled alert rules, in the caller's transaction.

The work is one statement (``alert_evaluate``): it moves each (rule, subject)
between clear, pending, firing and resolved, queues webhook deliveries and
sends ``NOTIFY tickbase_alerts``; this module validates the kinds asked for,
decodes the changes and logs them.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Literal

from tickbase.cluster.alerts._shared import Q, decode_json, logger
from tickbase.cluster.alerts.rules import ALERT_KINDS, known_hint
from tickbase.db.pool import AsyncConn
from tickbase.errors import InvalidAlert

ALERTS_CHANNEL = "tickbase_alerts"

Event = Literal["fired", "resolved"]


@dataclass(frozen=True, slots=True)
class AlertChange:
    """One alert that fired or resolved in an evaluation pass.

    The same fields, as JSON, are the payload of ``NOTIFY tickbase_alerts``
    (``id`` there is :attr:`alert_id`) and, camelCased by :func:`~tickbase.cluster.alert_json.public_alert`,
    the body of webhook POSTs and of WebSocket ``alert`` pushes.
    """

    event: Event
    alert_id: int
    rule: str
    kind: str
    subject: str
    value: float | None
    message: str
    detail: dict[str, Any]
    fired_at: datetime
    resolved_at: datetime | None

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> AlertChange:
        resolved_at = payload.get("resolved_at")
        value = payload["value"]
        return cls(
            event=payload["event"],
            alert_id=int(payload["id"]),
            rule=payload["rule"],
            kind=payload["kind"],
            subject=payload["subject"],
            value=None if value is None else float(value),
            message=payload["message"],
            detail=payload.get("detail") or {},
            fired_at=datetime.fromisoformat(payload["fired_at"]),
            resolved_at=datetime.fromisoformat(resolved_at) if resolved_at else None,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


async def evaluate_alerts(
    conn: AsyncConn,
    *,
    kinds: Collection[str] | None = None,
    now: datetime | None = None,
) -> list[AlertChange]:
    """Evaluate the enabled rules (of ``kinds``, default all) and apply the changes.

    Runs as one statement in the caller's transaction: deliveries are queued
    and ``NOTIFY tickbase_alerts`` sent only if that transaction commits. The
    changes are logged here (WARNING when fired, INFO when resolved) and
    returned. ``now`` is for tests only (a point in time to evaluate at).

    Example::

        async with pool.connection() as conn, conn.transaction():
            for change in await evaluate_alerts(conn, kinds={"leader_missing"}):
                ...
    """
    wanted: list[str] | None = None
    if kinds is not None:
        wanted = sorted(set(kinds))
        for kind in wanted:
            if kind not in ALERT_KINDS:
                raise InvalidAlert("alert kind", kind, known_hint("kinds", kind, ALERT_KINDS))
    cursor = await conn.execute(Q["alert_evaluate"], {"kinds": wanted, "now": now})
    changes = [AlertChange.from_payload(decode_json(row[1])) for row in await cursor.fetchall()]
    for change in changes:
        logger.log(
            logging.WARNING if change.event == "fired" else logging.INFO,
            "alert %s: rule=%s subject=%s value=%s: %s",
            change.event,
            change.rule,
            change.subject or "-",
            change.value,
            change.message,
        )
    return changes


__all__ = ["ALERTS_CHANNEL", "AlertChange", "Event", "evaluate_alerts"]
