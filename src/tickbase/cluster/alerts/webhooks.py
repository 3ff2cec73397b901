"""Webhooks: the registered receivers and the outbox delivery to them.

Each alert change is queued in ``alert_deliveries`` (the outbox) in the
evaluation's own transaction, once per enabled webhook. :class:`AlertNotifier`
claims due rows, POSTs them, and records the outcome: retried with
exponential backoff until ``max_attempts``, then given up with its last error.
:class:`WebhookStore` adds, removes and lists the webhooks.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Self
from urllib.parse import urlsplit

import httpx
import orjson
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from tickbase._version import __version__
from tickbase.cluster.alert_json import public_alert
from tickbase.cluster.alerts._shared import Q, decode_json, logger
from tickbase.db.errors import domain_errors
from tickbase.db.pool import AsyncConn
from tickbase.errors import InvalidAlert

WEBHOOK_TIMEOUT_DEFAULT = 5.0  # seconds, the whole POST
WEBHOOK_MAX_ATTEMPTS_DEFAULT = 5
WEBHOOK_BACKOFF_DEFAULT = 1.0  # seconds before the 2nd attempt; doubles each time
WEBHOOK_BACKOFF_MAX_DEFAULT = 300.0  # seconds
WEBHOOK_BATCH_DEFAULT = 20
# Added to the timeout for the claim's lease: time to write the outcome back.
_CLAIM_LEASE_MARGIN = 30.0  # seconds
_ERROR_BODY_MAX = 200  # characters of a refusing receiver's body kept in last_error


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
                    decode_json(payload).get("rule"),
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
                    url, content=orjson.dumps(public_alert(decode_json(payload))), headers=headers
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


class WebhookStore:
    """Add, remove and list webhooks (pool-based, one statement each).

    :class:`~tickbase.cluster.alerts.rules.AlertStore` is one: callers keep
    a single store for rules, alerts and webhooks.
    """

    def __init__(self, pool: AsyncConnectionPool[AsyncConn]) -> None:
        self.pool = pool

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


__all__ = [
    "WEBHOOK_BACKOFF_DEFAULT",
    "WEBHOOK_BACKOFF_MAX_DEFAULT",
    "WEBHOOK_BATCH_DEFAULT",
    "WEBHOOK_MAX_ATTEMPTS_DEFAULT",
    "WEBHOOK_TIMEOUT_DEFAULT",
    "AlertNotifier",
    "AlertWebhook",
    "WebhookStore",
    "check_webhook_url",
    "display_url",
    "origin",
]
