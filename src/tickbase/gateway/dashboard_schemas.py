"""The JSON shapes only the dashboard's pages read (camelCase outside)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tickbase.gateway.schemas import CamelModel, StatsOut


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


class TaskEventOut(CamelModel):
    """One step of a task's lifecycle."""

    at: datetime
    event: str
    node_id: str | None = None
    detail: Any = None
