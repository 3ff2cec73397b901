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
    ConfigurationError,
    DatabaseError,
    InvalidSchedule,
    InvalidTask,
    InvalidTransition,
    MigrationError,
    PayloadTooLarge,
    ResultTimeout,
    ScheduleNotFound,
    TaskFailed,
    TaskNotFound,
    TickbaseError,
    UnknownTaskType,
)
from tickbase.queue.models import EnqueueRequest, Task, TaskEvent
from tickbase.scheduler.models import Schedule, ScheduleSpec
from tickbase.settings import Settings
from tickbase.sync_client import SyncClient
from tickbase.tasks import TaskFunction, TaskHandle
from tickbase.types import TaskStatus

__all__ = [
    "App",
    "ConfigurationError",
    "DatabaseError",
    "EnqueueRequest",
    "InvalidSchedule",
    "InvalidTask",
    "InvalidTransition",
    "MigrationError",
    "PayloadTooLarge",
    "ResultTimeout",
    "Schedule",
    "ScheduleNotFound",
    "ScheduleSpec",
    "Settings",
    "SyncClient",
    "Task",
    "TaskEvent",
    "TaskFailed",
    "TaskFunction",
    "TaskHandle",
    "TaskNotFound",
    "TaskStatus",
    "TickbaseError",
    "UnknownTaskType",
    "__version__",
]
