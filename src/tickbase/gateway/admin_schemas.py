"""The JSON shapes of tokens, cluster-wide limits, alert rules and webhooks, and the
leader lease (camelCase outside).

Used by the HTTP routes of :mod:`tickbase.gateway.routes.admin` and by the CLI's
``--json`` of ``tickbase tokens``, ``limits`` and ``alerts rules``: one
serialisation for both.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from tickbase.gateway.schemas import INT4_MAX, SECONDS_MAX, CamelModel, InModel


class TokenCreate(InModel):
    role: Literal["admin", "viewer"]
    name: str | None = Field(default=None, min_length=1, max_length=200)


class TokenOut(CamelModel):
    """A stored token as listings show it: its prefix, never the token or its hash."""

    id: int
    name: str | None = None
    role: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None


class TokenCreated(CamelModel):
    """A token just created: ``token`` is shown this once (only its hash is stored)."""

    id: int
    name: str | None = None
    role: str
    prefix: str
    token: str


class QueueLimitIn(InModel):
    concurrency: int = Field(ge=1, le=INT4_MAX)


class QueueLimitOut(CamelModel):
    queue: str
    concurrency: int
    running: int
    updated_at: datetime


class TaskLimitOut(CamelModel):
    task_type: str
    rate_max: int | None = None
    rate_window_seconds: float | None = None
    concurrency_key: str | None = None
    concurrency_limit: int | None = None
    updated_at: datetime


class LimitsOut(CamelModel):
    """The cluster-wide limits (as ``tickbase limits list``)."""

    queues: list[QueueLimitOut]
    task_types: list[TaskLimitOut]


class AlertRuleOut(CamelModel):
    name: str
    kind: str
    threshold: float | None = None
    for_seconds: float
    enabled: bool
    description: str | None = None
    updated_at: datetime


class AlertRuleUpdate(InModel):
    """Fields to change; leave out what stays."""

    threshold: float | None = Field(default=None, ge=0, le=SECONDS_MAX)
    for_seconds: float | None = Field(default=None, ge=0, le=SECONDS_MAX)
    enabled: bool | None = None


class ConcurrencyKeyOut(CamelModel):
    """A concurrency key that running tasks hold now."""

    key: str
    running: int
    concurrency_limit: int
    """At most this many of the key's tasks run at once (its oldest task's limit)."""
    task_types: list[str]
    oldest_started_at: datetime | None = None


class ConcurrencyKeyPage(CamelModel):
    items: list[ConcurrencyKeyOut]
    next_cursor: str | None = None
    """The last key of this page: pass it as ``cursor`` for the next."""


class AlertWebhookOut(CamelModel):
    """A webhook as listings show it: the URL without query or credentials."""

    id: int
    url: str
    enabled: bool
    created_at: datetime


class LeaderOut(CamelModel):
    """The ``leader`` lease: who holds it and its fencing token (None: never held)."""

    holder: str | None = None
    token: int | None = None
    acquired_at: datetime | None = None
    expires_at: datetime | None = None
    live: bool = False
    """Whether the lease is unexpired now (an expired one names the last leader)."""
