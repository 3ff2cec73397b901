"""Alerts: rules over the cluster's figures that fire once, resolve once, and notify.

Overview
    A rule (``tickbase.alert_rules``) names a condition kind and its limits:

    ===================  =============================================  ==========================
    kind                 holds while                                    subject
    ===================  =============================================  ==========================
    failures_last_hour   tasks failed for good in the last hour > N     ``''``
    backlog              tasks due and waiting for a worker > N         ``''``
    node_down            a node stopped heartbeating (silent for N s,   the node id
                         default three of its own intervals)
    leader_missing       no live ``leader`` lease                       ``''``
    schedule_lag         the most overdue schedule is late by > N s     ``''``
    ===================  =============================================  ==========================

    The migration seeds one rule of each kind (failures > 5, backlog > 100 for
    5 minutes, node down, leader missing for 30 s, schedule lag > 60 s);
    :class:`AlertStore` (and ``tickbase alerts rule``) changes their limits.

    :func:`evaluate_alerts` runs one pass inside the caller's transaction: the
    cluster leader's housekeeping evaluates every rule, and every node checks
    ``leader_missing`` from its heartbeat, because a missing leader cannot
    report its own absence.

State model
    Per (rule, subject): *clear* → *pending* (a row in ``alert_pending`` with
    the time the condition began) → *firing* (a row in ``alerts``, once the
    condition has held ``for_seconds``) → *resolved* (the same row, when the
    condition clears; a later recurrence is a new row). A disabled rule's
    firing alerts resolve. Each change (fired, resolved) is logged here,
    announced with ``NOTIFY tickbase_alerts`` (the gateway's ``alert``
    channel), and queued once per enabled webhook in ``alert_deliveries``.

Failure cases
    Evaluators racing on the same incident: the partial unique index on
    firing (rule, subject) lets one insert through; the others change nothing,
    queue nothing and notify nothing. A resolution is a guarded update, so it
    too happens once. A node that is killed is reaped by the leader's
    housekeeping within seconds, usually before any evaluation sees it silent: a
    trigger records reaped nodes in ``lost_nodes`` so that ``node_down`` still
    fires; that alert resolves when the node heartbeats again, or after a day.
    A crash between a change and its webhook POST loses nothing: the outbox
    row was written in the same transaction, and :class:`AlertNotifier`
    retries with exponential backoff until it gives up after ``max_attempts``
    and records the last error. Delivery is at least once; receivers dedupe on
    the ``X-Tickbase-Delivery`` header.
"""

from __future__ import annotations

import asyncio
import difflib
import logging
import math
from collections.abc import Collection
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Literal, Self
from urllib.parse import urlsplit

import httpx
import orjson
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from tickbase._version import __version__
from tickbase.cluster.alert_json import public_alert
from tickbase.db.errors import domain_errors
from tickbase.db.pool import AsyncConn
from tickbase.db.sqlfile import load_queries
from tickbase.errors import InvalidAlert

Q = load_queries("tickbase.cluster", "alerts.sql")
logger = logging.getLogger("tickbase.alerts")

ALERT_KINDS = frozenset(
    {
        "failures_last_hour",
        "backlog",
        "node_down",
        "leader_missing",
        "schedule_lag",
        "data_completeness",
        "no_worker_for_type",
    }
)
ALERT_STATES = ("firing", "resolved")
ALERTS_CHANNEL = "tickbase_alerts"

WEBHOOK_TIMEOUT_DEFAULT = 5.0  # seconds, the whole POST
WEBHOOK_MAX_ATTEMPTS_DEFAULT = 5
WEBHOOK_BACKOFF_DEFAULT = 1.0  # seconds before the 2nd attempt; doubles each time
WEBHOOK_BACKOFF_MAX_DEFAULT = 300.0  # seconds
WEBHOOK_BATCH_DEFAULT = 20
# Added to the timeout for the claim's lease: time to write the outcome back.
_CLAIM_LEASE_MARGIN = 30.0  # seconds
_ERROR_BODY_MAX = 200  # characters of a refusing receiver's body kept in last_error

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


@dataclass(frozen=True, slots=True)
class AlertWebhook:
    """One webhook; :attr:`display_url` is the URL without its secrets."""

    id: int
    url: str
    enabled: bool
    created_at: datetime

    @property
    def display_url(self) -> str:
        return display_url(self.url)

    def to_dict(self, *, secrets: bool = False) -> dict[str, Any]:
        """The webhook as JSON values; the URL without query and credentials unless ``secrets``."""
        return {
            "id": self.id,
            "url": self.url if secrets else self.display_url,
            "enabled": self.enabled,
            "created_at": self.created_at,
        }


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
                raise InvalidAlert("alert kind", kind, _known("kinds", kind, ALERT_KINDS))
    cursor = await conn.execute(Q["alert_evaluate"], {"kinds": wanted, "now": now})
    changes = [AlertChange.from_payload(_json(row[1])) for row in await cursor.fetchall()]
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


class AlertNotifier:
    """Deliver queued alert changes to the webhooks by HTTP POST.

    Each call of :meth:`deliver_due` claims due rows of ``alert_deliveries``
    (``FOR UPDATE SKIP LOCKED``, so notifiers on several nodes never post the
    same row at once), POSTs them concurrently with a ``timeout`` for the
    whole request, and records each outcome. Any 2xx answer is a delivery;
    anything else is retried after ``backoff`` seconds, doubling each time up
    to ``max_backoff``, until ``max_attempts`` attempts have failed: then the
    row is given up with its last error.

    Example::

        async with AlertNotifier(pool, timeout=5.0) as notifier:
            delivered = await notifier.deliver_due()
    """

    def __init__(
        self,
        pool: AsyncConnectionPool[AsyncConn],
        *,
        timeout: float = WEBHOOK_TIMEOUT_DEFAULT,
        max_attempts: int = WEBHOOK_MAX_ATTEMPTS_DEFAULT,
        backoff: float = WEBHOOK_BACKOFF_DEFAULT,
        max_backoff: float = WEBHOOK_BACKOFF_MAX_DEFAULT,
        batch_size: int = WEBHOOK_BATCH_DEFAULT,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        if not (timeout > 0 and math.isfinite(timeout)):
            raise InvalidAlert("timeout", timeout, "must be a finite number of seconds > 0")
        if max_attempts < 1:
            raise InvalidAlert("max_attempts", max_attempts, "must be at least 1")
        if not (0 <= backoff <= max_backoff and math.isfinite(max_backoff)):
            raise InvalidAlert(
                "backoff", (backoff, max_backoff), "need 0 <= backoff <= max_backoff, finite"
            )
        if batch_size < 1:
            raise InvalidAlert("batch_size", batch_size, "must be at least 1")
        self.pool = pool
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.batch_size = batch_size
        self._own_client = client is None
        self._client = client or httpx.AsyncClient(
            timeout=httpx.Timeout(timeout), follow_redirects=False
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client (only if this notifier created it)."""
        if self._own_client:
            await self._client.aclose()

    def retry_delay(self, attempts: int) -> float:
        """Seconds to wait after the ``attempts``-th failed attempt."""
        return float(min(self.backoff * 2 ** (attempts - 1), self.max_backoff))

    async def deliver_due(self) -> int:
        """Attempt every due delivery (up to ``batch_size``); return how many were delivered."""
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                Q["alert_delivery_claim"],
                {"limit": self.batch_size, "lease_seconds": self.timeout + _CLAIM_LEASE_MARGIN},
            )
            claimed = await cursor.fetchall()
        if not claimed:
            return 0
        outcomes = await asyncio.gather(*(self._post(row) for row in claimed))
        retry_in: list[float | None] = []
        for row, (ok, error) in zip(claimed, outcomes, strict=True):
            delivery_id, attempts, event, payload, url, webhook_id = row
            where = f"webhook #{webhook_id} {origin(url)}"
            if ok:
                retry_in.append(None)
                logger.debug("alert %s delivered to %s", event, where)
            elif attempts >= self.max_attempts:
                retry_in.append(None)
                logger.warning(
                    "alert %s of rule %s: gave up on delivery #%s to %s after %d attempts: %s",
                    event,
                    _json(payload).get("rule"),
                    delivery_id,
                    where,
                    attempts,
                    error,
                )
            else:
                retry_in.append(self.retry_delay(attempts))
                logger.info(
                    "alert %s: delivery #%s to %s failed (attempt %d of %d, retry in %g s): %s",
                    event,
                    delivery_id,
                    where,
                    attempts,
                    self.max_attempts,
                    retry_in[-1],
                    error,
                )
        async with self.pool.connection() as conn:
            await conn.execute(
                Q["alert_delivery_record"],
                {
                    "ids": [row[0] for row in claimed],
                    "attempts": [row[1] for row in claimed],
                    "oks": [ok for ok, _ in outcomes],
                    "retry_in": retry_in,
                    "errors": [error for _, error in outcomes],
                },
            )
        return sum(1 for ok, _ in outcomes if ok)

    async def _post(self, row: tuple[Any, ...]) -> tuple[bool, str | None]:
        delivery_id, attempts, event, payload, url, _ = row
        headers = {
            "content-type": "application/json",
            "user-agent": f"tickbase/{__version__}",
            "x-tickbase-event": str(event),
            "x-tickbase-delivery": str(delivery_id),
            "x-tickbase-attempt": str(attempts),
        }
        try:
            # httpx's timeout bounds each phase (connect, write, read); this
            # one bounds the whole request, as the setting promises.
            async with asyncio.timeout(self.timeout):
                response = await self._client.post(
                    url, content=orjson.dumps(public_alert(_json(payload))), headers=headers
                )
        except (TimeoutError, httpx.TimeoutException):
            return False, f"timed out after {self.timeout:g} s"
        except httpx.HTTPError as exc:
            # Exception texts may quote the URL, and with it a token.
            return False, f"{type(exc).__name__}: {str(exc).replace(url, origin(url))}"
        if response.is_success:
            return True, None
        body = response.text.strip().replace(url, origin(url))
        if len(body) > _ERROR_BODY_MAX:
            body = body[: _ERROR_BODY_MAX - 3] + "..."
        return False, f"HTTP {response.status_code} {response.reason_phrase}: {body}".rstrip(": ")


class AlertStore:
    """Read and change rules, alerts and webhooks (pool-based, one statement each).

    Example::

        store = AlertStore(pool)
        await store.set_rule("backlog", threshold=500, for_seconds=120)
        hook = await store.add_webhook("https://ops.example.com/hooks/tickbase")
        firing = await store.alerts(state="firing")
    """

    def __init__(self, pool: AsyncConnectionPool[AsyncConn]) -> None:
        self.pool = pool

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
            _check_seconds_or_count("threshold", threshold)
        if for_seconds is not None:
            _check_seconds_or_count("for_seconds", for_seconds)
        rules = {rule.name: rule for rule in await self.rules()}
        rule = rules.get(name)
        if rule is None:
            raise InvalidAlert("rule", name, _known("rules", name, rules))
        if threshold is not None and rule.kind == "leader_missing":
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

    async def add_webhook(self, url: str) -> int:
        """Register a webhook for every alert change; return its id.

        The URL must be http(s) with a host; adding one already registered
        enables it again and returns its id.
        """
        checked = check_webhook_url(url)
        async with self.pool.connection() as conn:
            with domain_errors({"url": checked}):
                cursor = await conn.execute(Q["alert_webhook_add"], {"url": checked})
            row = await cursor.fetchone()
        assert row is not None
        return int(row[0])

    async def remove_webhook(self, webhook_id: int) -> None:
        """Remove a webhook and drop what was still to be posted to it."""
        async with self.pool.connection() as conn:
            cursor = await conn.execute(Q["alert_webhook_remove"], {"id": webhook_id})
            row = await cursor.fetchone()
        if row is None:
            raise InvalidAlert(
                "webhook id", webhook_id, "no such webhook (`tickbase alerts webhooks` lists them)"
            )

    async def webhooks(self) -> list[AlertWebhook]:
        """Every webhook, by id (with full URLs: see :attr:`AlertWebhook.display_url`)."""
        async with self.pool.connection() as conn:
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(Q["alert_webhook_list"])
            return [AlertWebhook(**row) for row in await cursor.fetchall()]


def check_webhook_url(url: str) -> str:
    """``url`` as it will be stored, or :class:`~tickbase.errors.InvalidAlert` naming its problem."""
    if not isinstance(url, str) or not url.strip():
        raise InvalidAlert("webhook url", url, "it is empty; give an http(s)://host/path URL")
    text = url.strip()
    parts = urlsplit(text)
    if not parts.scheme:
        raise InvalidAlert(
            "webhook url", url, "not an http(s) URL (no scheme); write it as https://host/path"
        )
    if parts.scheme not in ("http", "https"):
        hint = "" if "://" in text else " (did you forget https://?)"
        raise InvalidAlert(
            "webhook url", url, f"the scheme must be http or https, not {parts.scheme!r}{hint}"
        )
    if not text[len(parts.scheme) :].startswith("://"):
        raise InvalidAlert(
            "webhook url",
            url,
            "not an http(s) URL (no // after the scheme); write https://host/path",
        )
    if any(char.isspace() for char in text):
        raise InvalidAlert("webhook url", url, "it contains whitespace (encode it as %20)")
    if not parts.hostname:
        raise InvalidAlert("webhook url", url, "it has no host; write it as https://host/path")
    try:
        port = parts.port
        httpx.URL(text)
    except (ValueError, httpx.InvalidURL) as exc:
        raise InvalidAlert("webhook url", url, f"it is not a valid URL ({exc})") from None
    if port == 0:
        raise InvalidAlert("webhook url", url, "port 0 cannot be posted to")
    # urlsplit lowers the scheme; the stored text must match the table's CHECK too.
    return parts.scheme + text[len(parts.scheme) :]


def display_url(url: str) -> str:
    """``scheme://host[:port]/path``: the URL without credentials, query or fragment."""
    parts = urlsplit(url)
    return f"{origin(url)}{parts.path}"


def origin(url: str) -> str:
    """``scheme://host[:port]``: all of a URL that logs may carry (a path may hold a token)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{parts.scheme}://{host}" + (f":{port}" if port else "")


def _check_seconds_or_count(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidAlert(name, value, "must be a number")
    if not math.isfinite(value) or value < 0:
        raise InvalidAlert(name, value, "must be a finite number >= 0")


def _known(what: str, name: str, known: Collection[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"no such {what[:-1]} ({hint}known {what}: {', '.join(sorted(known))})"


def _json(value: Any) -> dict[str, Any]:
    # jsonb comes back decoded on configured connections, as text otherwise.
    if isinstance(value, str | bytes):
        decoded: dict[str, Any] = orjson.loads(value)
        return decoded
    return dict(value)


__all__ = [
    "ALERTS_CHANNEL",
    "ALERT_KINDS",
    "Alert",
    "AlertChange",
    "AlertNotifier",
    "AlertRule",
    "AlertStore",
    "AlertWebhook",
    "check_webhook_url",
    "display_url",
    "evaluate_alerts",
    "origin",
]
