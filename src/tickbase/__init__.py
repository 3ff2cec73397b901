"""tickbase: a PostgreSQL-coordinated task system for market-data and quant platforms.

Example::

    import tickbase

    app = tickbase.App()

    @app.task(retries=3, timeout=30)
    async def collect(symbol: str) -> dict:
        ...

    async with app:
        handle = await collect.defer(symbol="BTCUSDT")
        print(await handle.result(timeout=10))
"""

from tickbase._version import __version__
from tickbase.app import App
from tickbase.errors import (
    AppNotOpen,
    ConfigurationError,
    DatabaseError,
    InvalidAlert,
    InvalidBar,
    InvalidBarFile,
    InvalidCredentials,
    InvalidMarketData,
    InvalidPayload,
    InvalidSchedule,
    InvalidTask,
    InvalidToken,
    InvalidTransition,
    InvalidValue,
    InvalidWorkflow,
    LeaseLost,
    MigrationError,
    PayloadTooLarge,
    RateLimited,
    ResolutionError,
    ResultTimeout,
    ScheduleNotFound,
    ServerNotRunning,
    SourceError,
    SourceSkipped,
    SourceTimeout,
    SourceUnavailable,
    TaskFailed,
    TaskNotFound,
    TickbaseError,
    UnknownTaskType,
    WorkflowRunNotFound,
)
from tickbase.queue.models import EnqueueRequest, Task, TaskEvent
from tickbase.scheduler.models import Schedule, ScheduleSpec
from tickbase.settings import Settings
from tickbase.sync_client import SyncClient
from tickbase.tasks import TaskFunction, TaskHandle
from tickbase.types import TaskStatus
from tickbase.worker.context import TaskContext
from tickbase.worker.control import Cancel, Retry, Snooze, TaskControl
from tickbase.workflows.api import Workflow, WorkflowRun

__all__ = [
    "App",
    "AppNotOpen",
    "Cancel",
    "ConfigurationError",
    "DatabaseError",
    "EnqueueRequest",
    "InvalidAlert",
    "InvalidBar",
    "InvalidBarFile",
    "InvalidCredentials",
    "InvalidMarketData",
    "InvalidPayload",
    "InvalidSchedule",
    "InvalidTask",
    "InvalidToken",
    "InvalidTransition",
    "InvalidValue",
    "InvalidWorkflow",
    "LeaseLost",
    "MigrationError",
    "PayloadTooLarge",
    "RateLimited",
    "ResolutionError",
    "ResultTimeout",
    "Retry",
    "Schedule",
    "ScheduleNotFound",
    "ScheduleSpec",
    "ServerNotRunning",
    "Settings",
    "Snooze",
    "SourceError",
    "SourceSkipped",
    "SourceTimeout",
    "SourceUnavailable",
    "SyncClient",
    "Task",
    "TaskContext",
    "TaskControl",
    "TaskEvent",
    "TaskFailed",
    "TaskFunction",
    "TaskHandle",
    "TaskNotFound",
    "TaskStatus",
    "TickbaseError",
    "UnknownTaskType",
    "Workflow",
    "WorkflowRun",
    "WorkflowRunNotFound",
    "__version__",
]
