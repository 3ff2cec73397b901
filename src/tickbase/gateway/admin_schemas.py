"""The JSON shapes of tokens, cluster-wide limits and alert rules (camelCase outside).

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
