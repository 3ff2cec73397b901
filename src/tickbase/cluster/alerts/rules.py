"""Alert rules: the kinds, the checks on a rule's limits, and the store of rules and alerts.

The migration seeds one rule of each kind; :class:`AlertStore` reads them,
changes their limits (refusing what the evaluation could not mean), and lists
the alerts they raised. Its webhook methods come from
:class:`~tickbase.cluster.alerts.webhooks.WebhookStore`.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Collection
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from psycopg.rows import dict_row

from tickbase.cluster.alerts._shared import Q
from tickbase.cluster.alerts.webhooks import WebhookStore
from tickbase.db.errors import domain_errors
from tickbase.errors import InvalidAlert

ALERT_KINDS = frozenset(
    {
        "failures_last_hour",
        "backlog",
        "node_down",
        "leader_missing",
        "schedule_lag",
        "data_completeness",
        "no_worker_for_type",
        "realtime_circuit_open",
        "realtime_loop_slow",
        "realtime_writer_drops",
    }
)
ALERT_STATES = ("firing", "resolved")


@dataclass(frozen=True, slots=True)
class AlertRule:
    """One row of ``tickbase.alert_rules``."""

    name: str
    kind: str
    threshold: float | None
    for_seconds: float
    enabled: bool
    description: str | None
    updated_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Alert:
    """One firing (and, once it cleared, its resolution) of a rule."""

    id: int
    rule: str
    kind: str
    subject: str
    state: str
    value: float | None
    message: str
    detail: dict[str, Any]
    fired_at: datetime
    resolved_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class AlertStore(WebhookStore):
    """Read and change rules, alerts and webhooks (pool-based, one statement each).

    Example::

        store = AlertStore(pool)
        await store.set_rule("backlog", threshold=500, for_seconds=120)
        hook = await store.add_webhook("https://ops.example.com/hooks/tickbase")
        firing = await store.alerts(state="firing")
    """

    async def rules(self) -> list[AlertRule]:
        """Every rule, by name."""
        async with self.pool.connection() as conn:
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(Q["alert_rule_list"])
            return [AlertRule(**row) for row in await cursor.fetchall()]

    async def set_rule(
        self,
        name: str,
        *,
        threshold: float | None = None,
        for_seconds: float | None = None,
        enabled: bool | None = None,
    ) -> AlertRule:
        """Change a rule's threshold, ``for_seconds`` or enabled flag (``None`` keeps it).

        Refused with :class:`~tickbase.errors.InvalidAlert`, nothing changed:
        an unknown rule, a negative or non-finite number, a threshold on a rule
        that has none (``leader_missing``), a zero silence for ``node_down``.
        """
        if threshold is not None:
            check_seconds_or_count("threshold", threshold)
        if for_seconds is not None:
            check_seconds_or_count("for_seconds", for_seconds)
        rules = {rule.name: rule for rule in await self.rules()}
        rule = rules.get(name)
        if rule is None:
            raise InvalidAlert("rule", name, known_hint("rules", name, rules))
        if threshold is not None and rule.kind in ("leader_missing", "realtime_circuit_open"):
            raise InvalidAlert(
                "threshold",
                threshold,
                f"rule {name!r} ({rule.kind}) has no threshold; set for_seconds instead",
            )
        if threshold is not None and rule.kind == "node_down" and threshold == 0:
            raise InvalidAlert(
                "threshold",
                threshold,
                f"rule {name!r} counts seconds of silence; 0 would mark every node down",
            )
        async with self.pool.connection() as conn:
            cursor = conn.cursor(row_factory=dict_row)
            with domain_errors({"threshold": threshold, "for_seconds": for_seconds}):
                await cursor.execute(
                    Q["alert_rule_update"],
                    {
                        "name": name,
                        "threshold": threshold,
                        "for_seconds": for_seconds,
                        "enabled": enabled,
                    },
                )
            row = await cursor.fetchone()
        if row is None:
            raise InvalidAlert("rule", name, "no such rule")
        return AlertRule(**row)

    async def alerts(
        self, state: str | None = None, limit: int = 100, before_id: int | None = None
    ) -> list[Alert]:
        """The newest alerts first, of one ``state`` (firing, resolved) or both;
        page with ``before_id`` = the last id seen."""
        if state is not None and state not in ALERT_STATES:
            raise InvalidAlert("state", state, "must be 'firing' or 'resolved'")
        if not 1 <= limit <= 10_000:
            raise InvalidAlert("limit", limit, "must be between 1 and 10000")
        async with self.pool.connection() as conn:
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(
                Q["alert_list"], {"state": state, "limit": limit, "before_id": before_id}
            )
            return [Alert(**row) for row in await cursor.fetchall()]


def check_seconds_or_count(name: str, value: float) -> None:
    """Refuse (:class:`~tickbase.errors.InvalidAlert`) anything but a finite number >= 0."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidAlert(name, value, "must be a number")
    if not math.isfinite(value) or value < 0:
        raise InvalidAlert(name, value, "must be a finite number >= 0")


def known_hint(what: str, name: str, known: Collection[str]) -> str:
    """``no such <what> (did you mean ...? known <what>: ...)`` for an unknown ``name``."""
    close = difflib.get_close_matches(name, list(known), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"no such {what[:-1]} ({hint}known {what}: {', '.join(sorted(known))})"


__all__ = [
    "ALERT_KINDS",
    "ALERT_STATES",
    "Alert",
    "AlertRule",
    "AlertStore",
    "check_seconds_or_count",
    "known_hint",
]
