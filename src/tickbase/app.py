"""The composition root: ``App`` wires settings, database, queue and workers.

It is the only module that imports every block. What it hands out lives
beside it: task functions and handles in :mod:`tickbase.tasks`, the blocking
client in :mod:`tickbase.sync_client`, the maintenance tasks in
:mod:`tickbase.maintenance`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ParamSpec, TypeVar, overload

from psycopg_pool import AsyncConnectionPool

from tickbase.cluster.alerts import AlertNotifier, AlertStore, evaluate_alerts
from tickbase.cluster.election import LeaderElection
from tickbase.cluster.housekeeping import Housekeeper
from tickbase.db.listener import Listener
from tickbase.db.migrate import migrate
from tickbase.db.pool import AsyncConn, connect, create_pool, resolve_database_url
from tickbase.errors import AppNotOpen, InvalidSchedule
from tickbase.maintenance import WORKFLOW_TASK, register_maintenance
from tickbase.node import run_node
from tickbase.queue.limits import LimitStore, check_queue_concurrency
from tickbase.queue.models import EnqueueRequest
from tickbase.queue.repository import TaskQueue
from tickbase.queue.results import ResultWaiters
from tickbase.scheduler.models import ScheduleSpec
from tickbase.scheduler.store import ScheduleStore
from tickbase.scheduler.ticker import Ticker
from tickbase.settings import Settings, load_settings
from tickbase.sync_client import SyncClient
from tickbase.tasks import TaskFunction, TaskHandle, default_task_name
from tickbase.worker.builtins import register_builtins
from tickbase.worker.registry import Registry, TaskDefinition
from tickbase.worker.worker import CONCURRENCY_DEFAULT, FETCHERS, Worker, make_node_id
from tickbase.workflows.api import Workflow, WorkflowRuns
from tickbase.workflows.engine import reconcile

# Re-exported: these lived here before they had modules of their own.
__all__ = ["App", "SyncClient", "TaskFunction", "TaskHandle", "default_task_name"]

MARKET_DATA_TASK_TYPES = "marketdata.%"  # LIKE pattern of the market-data block's tasks

P = ParamSpec("P")
R = TypeVar("R")


class App:
    """A tickbase application: task definitions plus a connection to the database.

    Example::

        app = tickbase.App()            # DATABASE_URL, else the embedded server

        @app.task(retries=2)
        async def add(a: int, b: int) -> int:
            return a + b

        async with app:
            handle = await add.defer(a=1, b=2)
            assert await handle.result(timeout=10) == 3
    """

    def __init__(
        self, database_url: str | None = None, *, settings: Settings | None = None
    ) -> None:
        self.settings = settings or load_settings(database_url=database_url)
        if database_url is not None:
            self.settings = self.settings.model_copy(update={"database_url": database_url})
        self.registry = Registry()
        register_builtins(self.registry)
        self.node_id = make_node_id()
        self._code_schedules: dict[str, ScheduleSpec] = {}
        self._code_workflows: dict[str, Workflow] = {}
        self._code_queue_limits: dict[str, int] = {}
        register_maintenance(self)
        self._pool: AsyncConnectionPool[AsyncConn] | None = None
        self._claims: AsyncConnectionPool[AsyncConn] | None = None
        self._queue: TaskQueue | None = None
        self._listener: Listener | None = None
        self._results = ResultWaiters()
        self._sync: SyncClient | None = None
        self.url: str | None = None
        self.started_server = False
        self.extensions: dict[str, Any] = {}
        """Installed add-ons by name (``tickbase.marketdata.pipeline.install`` adds
        ``"marketdata"``)."""
        self.node_reports: dict[str, Callable[[], object]] = {}
        """Extra figures for this node's heartbeat metrics, by key, each read at every
        beat (``tickbase up`` adds ``"realtime"`` while its pipeline runs)."""

    # ---- definitions -----------------------------------------------------------

    @overload
    def task(
        self,
        func: Callable[P, R],
        /,
        *,
        name: str | None = None,
        queue: str = "default",
        priority: int = 0,
        retries: int = 0,
        retry_delay: float = 1.0,
        timeout: float | None = None,
        rate_limit: str | None = None,
        concurrency_key: str | None = None,
        concurrency_limit: int = 1,
    ) -> TaskFunction[P, R]: ...

    @overload
    def task(
        self,
        func: None = None,
        /,
        *,
        name: str | None = None,
        queue: str = "default",
        priority: int = 0,
        retries: int = 0,
        retry_delay: float = 1.0,
        timeout: float | None = None,
        rate_limit: str | None = None,
        concurrency_key: str | None = None,
        concurrency_limit: int = 1,
    ) -> Callable[[Callable[P, R]], TaskFunction[P, R]]: ...

    def task(
        self,
        func: Callable[P, R] | None = None,
        /,
        *,
        name: str | None = None,
        queue: str = "default",
        priority: int = 0,
        retries: int = 0,
        retry_delay: float = 1.0,
        timeout: float | None = None,
        rate_limit: str | None = None,
        concurrency_key: str | None = None,
        concurrency_limit: int = 1,
    ) -> TaskFunction[P, R] | Callable[[Callable[P, R]], TaskFunction[P, R]]:
        """Register an async or sync function as a task type.

        ``name`` is the task type (default ``module.function``); ``retries`` is
        how many times a failure is retried (so attempts = retries + 1), with
        exponential backoff from ``retry_delay`` seconds; ``timeout`` bounds one
        attempt, in seconds.

        Limits, held across the whole cluster (see :mod:`tickbase.queue.limits`):
        ``rate_limit`` such as ``"10/m"`` (at most 10 starts in any minute; also
        ``/s``, ``/h``, ``"100/5m"``); ``concurrency_key`` a template such as
        ``"{symbol}"`` formatted from the payload, with at most
        ``concurrency_limit`` tasks of one key running at once (1: one at a
        time, in enqueue order).
        """

        def register(function: Callable[P, R]) -> TaskFunction[P, R]:
            definition = TaskDefinition(
                name or default_task_name(function),
                function,
                queue=queue,
                priority=priority,
                retries=retries,
                retry_delay=retry_delay,
                timeout=timeout,
                rate_limit=rate_limit,
                concurrency_key=concurrency_key,
                concurrency_limit=concurrency_limit,
            )
            self.registry.add(definition)
            return TaskFunction(self, definition)

        return register(func) if func is not None else register

    def limit_queue(self, queue: str, *, concurrency: int) -> None:
        """At most ``concurrency`` tasks of ``queue`` running in the whole cluster.

        Stored when the app opens; change it at run time with
        ``app.limits.set_queue_concurrency`` or ``tickbase limits queue``.
        """
        check_queue_concurrency(queue, concurrency)
        self._code_queue_limits[queue] = concurrency

    @property
    def alerts(self) -> AlertStore:
        """Alert rules, alerts and webhooks (see :mod:`tickbase.cluster.alerts`)."""
        return AlertStore(self.pool)

    @property
    def limits(self) -> LimitStore:
        """The cluster's limits (queue concurrency, task-type limits)."""
        return LimitStore(self.pool)

    async def sync_limits(self) -> list[str]:
        """Store the limits defined in code; return the task types whose limits changed."""
        changed = await self.limits.sync_task_limits(self.registry.names(), self.registry.limits())
        for queue, concurrency in self._code_queue_limits.items():
            await self.limits.set_queue_concurrency(queue, concurrency)
        return changed

    # ---- lifecycle -------------------------------------------------------------

    @property
    def pool(self) -> AsyncConnectionPool[AsyncConn]:
        if self._pool is None:
            raise AppNotOpen()
        return self._pool

    @property
    def is_open(self) -> bool:
        """Whether :meth:`open` has run (and :meth:`close` not yet)."""
        return self._pool is not None

    @property
    def queue(self) -> TaskQueue:
        if self._queue is None:
            raise AppNotOpen()
        return self._queue

    async def open(self, *, apply_migrations: bool = True, start_server: bool = True) -> None:
        """Connect (starting the embedded server if needed) and migrate.

        With ``start_server=False`` an embedded server that is not running is
        :class:`~tickbase.errors.ServerNotRunning` (the CLI's one-shot commands).
        """
        if self._pool is not None:
            return
        url, self.started_server = await asyncio.to_thread(
            resolve_database_url, self.settings, start=start_server
        )
        self.url = url
        if apply_migrations:
            conn = await connect(url)
            try:
                await migrate(conn)
            finally:
                await conn.close()
        pool = create_pool(url, max_size=self.settings.pool_max_size)
        await pool.open(wait=True)
        self._pool = pool
        self._queue = TaskQueue(pool)
        if apply_migrations:
            await self.sync_limits()

    async def close(self) -> None:
        """Close the listener and the pool. Safe to call twice."""
        if self._listener is not None:
            await self._listener.stop()
            self._listener = None
        if self._claims is not None:
            await self._claims.close()
            self._claims = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
            self._queue = None

    async def __aenter__(self) -> App:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def listener(self) -> Listener:
        """The process's one LISTEN connection (created on first use)."""
        if self._listener is None:
            if self.url is None:
                raise AppNotOpen()
            self._listener = Listener(self.url)
            self._listener.subscribe(
                "tickbase_task_done", self._results.on_task_done, self._results.wake_all
            )
        return self._listener

    # ---- producing -------------------------------------------------------------

    async def defer(
        self, task_type: str, payload: Mapping[str, Any] | None = None, **options: Any
    ) -> TaskHandle:
        """Enqueue a task by type name (the handler may live in another process)."""
        [handle] = await self.enqueue_many(
            [EnqueueRequest(task_type, dict(payload or {}), **options)]
        )
        return handle

    async def enqueue_many(
        self, requests: Sequence[EnqueueRequest], conn: AsyncConn | None = None
    ) -> list[TaskHandle]:
        """Enqueue prepared requests in one statement (optionally in ``conn``'s transaction)."""
        rows = await self.queue.enqueue_many(requests, conn)
        return [TaskHandle(self, task_id, created=created) for task_id, created in rows]

    def handle(self, task_id: int) -> TaskHandle:
        """A handle for an existing task id."""
        return TaskHandle(self, task_id)

    @property
    def sync(self) -> SyncClient:
        """A blocking client for synchronous programs (its own loop thread)."""
        if self._sync is None:
            self._sync = SyncClient(self)
        return self._sync

    async def _await_result(self, task_id: int, timeout: float | None) -> Any:
        # Behind TaskHandle.result and SyncClient.result: one waiter set per app.
        return await self._results.wait(
            self.listener, self.queue, task_id, timeout, poll_interval=self.settings.poll_interval
        )

    # ---- consuming -------------------------------------------------------------

    def worker(
        self,
        *,
        queues: Sequence[str] | None = None,
        concurrency: int = CONCURRENCY_DEFAULT,
    ) -> Worker:
        """A worker over this app's registry, pool and listener (not yet running)."""
        return Worker(
            self.registry,
            self.pool,
            self.listener,
            self.settings,
            queues=queues,
            concurrency=concurrency,
            claim_pool=self._claim_pool(),
            node_id=self.node_id,
        )

    def _claim_pool(self) -> AsyncConnectionPool[AsyncConn]:
        """Connections for claims: asynchronous commit (see the worker's docstring)."""
        if self._claims is None:
            if self.url is None:
                raise AppNotOpen()
            self._claims = create_pool(
                self.url,
                min_size=1,
                # One more than the fetchers hold: the lease renewals' own.
                max_size=FETCHERS + 1,
                name="tickbase-claim",
                server_settings={"synchronous_commit": "off"},
            )
        return self._claims

    def ticker(self, election: LeaderElection | None = None) -> Ticker:
        """A scheduler ticker over this app's pool and listener (not yet running)."""
        return Ticker(
            self.pool,
            self.listener,
            node_id=self.node_id,
            lease_ttl=self.settings.leader_lease_seconds,
            election=election,
            # TICKBASE_MARKET_DATA=0 also silences the market-data schedules a
            # run with it on stored: they stay, unfired, until it is on again.
            skip_task_types=() if self.settings.market_data else (MARKET_DATA_TASK_TYPES,),
        )

    def housekeeper(
        self, election: LeaderElection, notifier: AlertNotifier | None = None
    ) -> Housekeeper:
        """The leader's housekeeping over this app's pool (runs while ``election`` leads):
        rescue, workflow reconcile, alert evaluation, then webhook deliveries."""
        return Housekeeper(
            self.pool,
            election,
            node_id=self.node_id,
            interval=self.settings.heartbeat_seconds,
            steps=[("workflow reconcile", reconcile), ("alerts", evaluate_alerts)],
            after=[("alert deliveries", notifier.deliver_due)] if notifier else [],
        )

    async def run(
        self,
        *,
        worker: bool = True,
        scheduler: bool = True,
        queues: Sequence[str] | None = None,
        concurrency: int = CONCURRENCY_DEFAULT,
        stop: asyncio.Event | None = None,
        other_roles: Sequence[str] = (),
    ) -> None:
        """Run this node's roles until ``stop`` is set (or one of them ends).

        ``other_roles`` names roles run beside these by the caller (``api``), so
        that the node's registration lists them.

        Code-defined and builtin schedules are registered first (idempotently).
        """
        await self.sync_schedules()
        await run_node(
            self,
            worker=worker,
            scheduler=scheduler,
            queues=queues,
            concurrency=concurrency,
            stop=stop,
            other_roles=other_roles,
        )

    async def run_worker(
        self,
        *,
        queues: Sequence[str] | None = None,
        concurrency: int = CONCURRENCY_DEFAULT,
        stop: asyncio.Event | None = None,
    ) -> None:
        """Run a worker (only) until ``stop`` is set (or forever)."""
        await self.run(scheduler=False, queues=queues, concurrency=concurrency, stop=stop)

    # ---- workflows -----------------------------------------------------------

    def workflow(
        self,
        name: str,
        *,
        mode: str = "serial",
        on_failure: str = "stop",
        max_parallel: int | None = None,
    ) -> Workflow:
        """Define a workflow (a DAG of steps); ``.step(...)`` adds steps, ``await .run()`` runs it.

        Example::

            wf = app.workflow("eod", mode="parallel", max_parallel=4)
            wf.step("bars", fetch_bars, payload={"symbol": "ES"}).step("ind", indicators, after=["bars"])
            run = await wf.run()
            assert await run.wait(timeout=60) == "succeeded"
        """
        return Workflow(
            lambda: self.pool,
            self.registry.names,
            self.registry.task_options,
            name,
            mode=mode,
            on_failure=on_failure,
            max_parallel=max_parallel,
        )

    @property
    def workflows(self) -> WorkflowRuns:
        """Stored workflows and their runs."""
        return WorkflowRuns(self.pool)

    # ---- schedules -----------------------------------------------------------

    @property
    def schedules(self) -> ScheduleStore:
        """Run-time control of stored schedules (create, update, pause, trigger, ...)."""
        return ScheduleStore(self.pool)

    def schedule(
        self,
        name: str,
        task: TaskFunction[Any, Any] | Workflow | str,
        *,
        cron: str | None = None,
        every: float | None = None,
        manual: bool = False,
        kwargs: Mapping[str, Any] | None = None,
        tz: str = "UTC",
        **options: Any,
    ) -> ScheduleSpec:
        """Define a schedule in code; it is stored (idempotently) when a node starts.

        Exactly one of ``cron`` (5 fields, or 6 with leading seconds), ``every``
        (seconds) or ``manual=True``. ``kwargs`` is the payload of each fire.
        Options: ``queue``, ``priority``, ``max_retries``, ``retry_interval``,
        ``timeout``, ``misfire_grace_seconds``, ``coalesce``, ``max_instances``,
        ``enabled``, ``description``. Invalid definitions raise at once.

        Example::

            app.schedule("collect-btc", collect_klines, cron="*/5 * * * *",
                         kwargs={"symbol": "BTCUSDT"})
        """
        if isinstance(task, Workflow):
            # A workflow target: each fire starts a run (the definition is
            # stored with the schedules when the node starts).
            self._code_workflows[task.name] = task
            kwargs = {"workflow": task.name, **(kwargs or {})}
            task = WORKFLOW_TASK
        if isinstance(task, TaskFunction):
            definition = task.definition
            defaults: dict[str, Any] = {
                "queue": definition.queue,
                "priority": definition.priority,
                "max_retries": definition.retries,
                "retry_interval": definition.retry_delay,
                "timeout": definition.timeout,
            }
            task_type = definition.name
        else:
            defaults, task_type = {}, task
        spec = ScheduleSpec.build(
            name,
            task_type,
            cron=cron,
            every=every,
            manual=manual,
            payload=dict(kwargs or {}),
            timezone=tz,
            origin=options.pop("origin", "code"),
            **{**defaults, **options},
        )
        if name in self._code_schedules:
            raise InvalidSchedule("name", name, "a schedule with this name is already defined")
        self._code_schedules[name] = spec
        return spec

    def periodic(
        self,
        *,
        cron: str | None = None,
        every: float | None = None,
        name: str | None = None,
        kwargs: Mapping[str, Any] | None = None,
        tz: str = "UTC",
        **options: Any,
    ) -> Callable[[Callable[P, R]], TaskFunction[P, R]]:
        """Decorator: register the function as a task and schedule it.

        Example::

            @app.periodic(cron="0 * * * *")
            async def hourly_snapshot() -> None: ...
        """

        def register(function: Callable[P, R]) -> TaskFunction[P, R]:
            task_function = function if isinstance(function, TaskFunction) else self.task(function)
            self.schedule(
                name or task_function.name,
                task_function,
                cron=cron,
                every=every,
                kwargs=kwargs,
                tz=tz,
                **options,
            )
            return task_function

        return register

    async def sync_schedules(self) -> int:
        """Store the code-defined and builtin schedules (and the workflows they
        run); return how many schedules changed."""
        for workflow in self._code_workflows.values():
            await workflow.save()
        return await self.schedules.sync(list(self._code_schedules.values()))
