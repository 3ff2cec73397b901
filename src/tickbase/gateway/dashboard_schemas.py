"""The JSON shapes only the dashboard's pages read (camelCase outside)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from tickbase.gateway.schemas import AlertOut, CamelModel, StatsOut


class ThroughputMinute(CamelModel):
    """Tasks that finished in one minute, by outcome."""

    minute: datetime
    succeeded: int
    failed: int
    cancelled: int


class OverviewOut(CamelModel):
    """The dashboard's overview: the cluster's figures and the last hour's throughput."""

    stats: StatsOut
    throughput: list[ThroughputMinute]
    open_alerts: list[AlertOut] = Field(default_factory=list)
    """The newest firing alerts (at most 10)."""


class TaskEventOut(CamelModel):
    """One step of a task's lifecycle."""

    at: datetime
    event: str
    node_id: str | None = None
    detail: Any = None
