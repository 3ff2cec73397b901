"""The composition root: ``App`` wires settings, database, queue and workers.

It is the only module that imports every block.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Generic, ParamSpec, TypeVar, overload

from psycopg_pool import AsyncConnectionPool

from tickbase.cluster.alerts import AlertNotifier, AlertStore, evaluate_alerts
from tickbase.cluster.housekeeping import Housekeeper
from tickbase.cluster.lease import Lease
from tickbase.cluster.nodes import NodeHeartbeat
from tickbase.db.listener import Listener
from tickbase.db.migrate import migrate
from tickbase.db.pool import AsyncConn, connect, create_pool, resolve_database_url
from tickbase.errors import InvalidSchedule, ResultTimeout, TaskFailed, TickbaseError
from tickbase.queue.limits import LimitStore, check_queue_concurrency
from tickbase.queue.models import EnqueueRequest, Task
from tickbase.queue.repository import TaskQueue
from tickbase.scheduler.models import ScheduleSpec
from tickbase.scheduler.store import ScheduleStore
from tickbase.scheduler.ticker import Ticker
from tickbase.settings import Settings, load_settings
from tickbase.types import TaskStatus
from tickbase.worker.builtins import register_builtins
from tickbase.worker.context import TaskContext
from tickbase.worker.registry import ENQUEUE_OPTIONS, Registry, TaskDefinition
from tickbase.worker.worker import CONCURRENCY_DEFAULT, FETCHERS, Worker, make_node_id
from tickbase.workflows.api import Workflow, WorkflowRuns
from tickbase.workflows.engine import reconcile

PRUNE_RETENTION_DAYS = 7.0
MARKET_DATA_TASK_TYPES = "marketdata.%"  # LIKE pattern of the market-data block's tasks
WORKFLOW_TASK = "tickbase.workflow"
PRUNE_EVERY_SECONDS = 3600.0
HEALTH_EVERY_SECONDS = 60.0

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


def _nothing_running() -> int:
    return 0


async def _check_leader_missing(conn: AsyncConn) -> None:
    await evaluate_alerts(conn, kinds={"leader_missing"})


class TaskHandle:
    """A reference to an enqueued task.

    Example::

        handle = await fetch_bars.defer(symbol="ESZ5")
        bars = await handle.result(timeout=10)
    """

    def __init__(self, app: App, task_id: int, *, created: bool = True) -> None:
        self.app = app
        self.id = task_id
        self.created = created
        """False when a dedupe key matched an unfinished task and that task was returned."""

    def __repr__(self) -> str:
        return f"TaskHandle(id={self.id})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TaskHandle) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    async def get(self) -> Task:
        """The task row as it is now."""
        return await self.app.queue.get(self.id)

    async def cancel(self) -> TaskStatus:
        """Cancel the task (see :meth:`TaskQueue.cancel`)."""
        return await self.app.queue.cancel(self.id)

    async def result(self, timeout: float | None = None) -> Any:
        """Wait for the task to finish and return its result.

        Woken by NOTIFY when the task ends (no polling while the listener is
        up; a slow poll covers a lost notification). Raises :class:`TaskFailed`
        when the task failed or was cancelled, :class:`ResultTimeout` when
        ``timeout`` seconds pass first.
        """
        return await self.app._await_result(self.id, timeout)


class TaskFunction(Generic[P, R]):
    """A function registered as a task type; call it directly or ``defer`` it.

    Example::

        @app.task(queue="marketdata", retries=3, timeout=30)
        async def collect(symbol: str) -> dict: ...

        handle = await collect.defer(symbol="BTCUSDT")
    """

    def __init__(self, app: App, definition: TaskDefinition) -> None:
        self.app = app
        self.definition = definition
        functools.update_wrapper(self, definition.func)

    @property
    def name(self) -> str:
        return self.definition.name

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        result: R = self.definition.func(*args, **kwargs)
        return result

    def request(self, kwargs: Mapping[str, Any]) -> EnqueueRequest:
        """The enqueue request for these kwargs.

        Keys that the handler does not accept and that name an enqueue option
        (``queue``, ``priority``, ``delay``, ``run_at``, ``dedupe_key``,
        ``request_id``, ``concurrency_key``, ``max_attempts``, ``retry_delay``,
        ``timeout``) set that option; every other key is payload.
        """
        definition = self.definition
        options: dict[str, Any] = {}
        payload: dict[str, Any] = {}
        for key, value in kwargs.items():
            if key in ENQUEUE_OPTIONS and key not in definition.parameters:
                options[key] = value
            else:
                payload[key] = value
        return EnqueueRequest(
            definition.name,
            payload,
            queue=options.pop("queue", definition.queue),
            priority=options.pop("priority", definition.priority),
            max_attempts=options.pop("max_attempts", definition.max_attempts),
            retry_delay=options.pop("retry_delay", definition.retry_delay),
            timeout=options.pop("timeout", definition.timeout),
            **options,
        )

    async def defer(self, **kwargs: Any) -> TaskHandle:
        """Enqueue one task with ``kwargs`` as payload; return its handle."""
        [handle] = await self.app.enqueue_many([self.request(kwargs)])
        return handle

    async def defer_many(self, kwargs_list: Iterable[Mapping[str, Any]]) -> list[TaskHandle]:
        """Enqueue many tasks in one statement; return their handles in order."""
        return await self.app.enqueue_many([self.request(kwargs) for kwargs in kwargs_list])

    def defer_sync(self, **kwargs: Any) -> TaskHandle:
        """``defer`` for synchronous code (no running event loop needed)."""
        return self.app.sync.enqueue(self.request(kwargs))


def default_task_name(function: Callable[..., Any]) -> str:
    """``module.qualname`` of a handler, with a script's own name for ``__main__``.

    A task defined in ``script.py`` is named ``script.f`` whether the script
    runs as ``python script.py`` (a producer) or is imported by
    ``--app script:app`` (a worker): otherwise the two would never agree.
    """
    module = function.__module__
    if module == "__main__":
        main = sys.modules.get("__main__")
        spec = getattr(main, "__spec__", None)
        path = getattr(main, "__file__", None)
        if spec is not None and spec.name:
            module = spec.name.removesuffix(".__main__")
        elif path:
            module = Path(path).stem
    return f"{module}.{function.__qualname__}"


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
        self._register_maintenance()
        self._pool: AsyncConnectionPool[AsyncConn] | None = None
        self._claims: AsyncConnectionPool[AsyncConn] | None = None
        self._queue: TaskQueue | None = None
        self._listener: Listener | None = None
        self._waiters: dict[int, list[asyncio.Event]] = {}
        self._sync: SyncClient | None = None
        self.url: str | None = None
        self.started_server = False
        self.extensions: dict[str, Any] = {}
        """Installed add-ons by name (``tickbase.marketdata.pipeline.install`` adds
        ``"marketdata"``)."""

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
            raise TickbaseError("the app is not open: use `async with app:` first")
        return self._pool

    @property
    def is_open(self) -> bool:
        """Whether :meth:`open` has run (and :meth:`close` not yet)."""
        return self._pool is not None

    @property
    def queue(self) -> TaskQueue:
        if self._queue is None:
            raise TickbaseError("the app is not open: use `async with app:` first")
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
                raise TickbaseError("the app is not open: use `async with app:` first")
            self._listener = Listener(self.url)
            self._listener.subscribe("tickbase_task_done", self._on_task_done, self._wake_waiters)
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

    # ---- results ---------------------------------------------------------------

    async def _await_result(self, task_id: int, timeout: float | None) -> Any:
        # Listen first, then look: a task that ends between the two is seen by
        # the look, one that ends after it wakes the wait.
        listener = self.listener
        await listener.start()
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        woken = asyncio.Event()
        self._waiters.setdefault(task_id, []).append(woken)
        try:
            task = await self.queue.get(task_id)
            while not task.status.is_final:
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    raise ResultTimeout(task_id, timeout or 0.0, str(task.status))
                wait = self.settings.poll_interval
                if remaining is not None:
                    wait = min(wait, remaining)
                woken.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await woken.wait()
                task = await self.queue.get(task_id)
        finally:
            waiters = self._waiters.get(task_id, [])
            with contextlib.suppress(ValueError):
                waiters.remove(woken)
            if not waiters:
                self._waiters.pop(task_id, None)
        if task.status is TaskStatus.SUCCEEDED:
            return task.result
        raise TaskFailed(task_id, str(task.status), task.error)

    def _on_task_done(self, payload: str) -> None:
        if not self._waiters:
            return
        for part in payload.split(","):
            with contextlib.suppress(ValueError):
                for woken in self._waiters.get(int(part), ()):
                    woken.set()

    def _wake_waiters(self) -> None:
        for waiters in self._waiters.values():
            for woken in waiters:
                woken.set()

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
                raise TickbaseError("the app is not open: use `async with app:` first")
            self._claims = create_pool(
                self.url,
                min_size=1,
                # One more than the fetchers hold: the lease renewals' own.
                max_size=FETCHERS + 1,
                name="tickbase-claim",
                server_settings={"synchronous_commit": "off"},
            )
        return self._claims

    def ticker(self, lease: Lease | None = None) -> Ticker:
        """A scheduler ticker over this app's pool and listener (not yet running)."""
        return Ticker(
            self.pool,
            self.listener,
            node_id=self.node_id,
            lease_ttl=self.settings.leader_lease_seconds,
            lease=lease,
            # TICKBASE_MARKET_DATA=0 also silences the market-data schedules a
            # run with it on stored: they stay, unfired, until it is on again.
            skip_task_types=() if self.settings.market_data else (MARKET_DATA_TASK_TYPES,),
        )

    def housekeeper(self, lease: Lease, notifier: AlertNotifier | None = None) -> Housekeeper:
        """The leader's housekeeping over this app's pool (runs while ``lease`` is held):
        rescue, workflow reconcile, alert evaluation, then webhook deliveries."""
        return Housekeeper(
            self.pool,
            lease,
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
        """Run this node's roles until ``stop`` is set (or one of them fails).

        ``other_roles`` names roles run beside these by the caller (``api``), so
        that the node's registration lists them.

        Code-defined and builtin schedules are registered first (idempotently).
        """
        await self.sync_schedules()
        roles: list[Worker | Ticker | Housekeeper] = []
        role_names: list[str] = list(other_roles)
        running_tasks: Callable[[], int] = _nothing_running
        if worker:
            the_worker = self.worker(queues=queues, concurrency=concurrency)
            roles.append(the_worker)
            role_names.append("worker")
            running_tasks = the_worker.running_count
        notifier: AlertNotifier | None = None
        if scheduler:
            # The scheduler role makes a node a candidate leader: the ticker
            # keeps the lease, the housekeeper works while it is held.
            lease = Lease(self.pool, holder=self.node_id, ttl=self.settings.leader_lease_seconds)
            notifier = AlertNotifier(self.pool)
            roles.extend([self.ticker(lease), self.housekeeper(lease, notifier)])
            role_names.append("scheduler")
        if self.url is None:
            raise TickbaseError("the app is not open: use `async with app:` first")
        # The heartbeat gets the URL, not the pool: it keeps a connection of
        # its own, so a pool starved by request handling cannot make the
        # leader declare this live node dead.
        heartbeat = NodeHeartbeat(
            self.url,
            self.node_id,
            roles=role_names,
            queues=queues,
            interval=self.settings.heartbeat_seconds,
            running=running_tasks,
            # A missing leader cannot report its own absence: every node checks.
            on_beat=[_check_leader_missing],
            task_types=self.registry.published() if worker else None,
        )
        beating = asyncio.create_task(heartbeat.run())
        tasks = [asyncio.create_task(role.run()) for role in roles]
        waiter = asyncio.create_task((stop or asyncio.Event()).wait())
        try:
            await asyncio.wait({*tasks, beating, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for role in roles:
                role.stop()
            waiter.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            # The node leaves the cluster only once its roles have finished
            # (running tasks drained or re-queued).
            heartbeat.stop()
            results.extend(await asyncio.gather(beating, return_exceptions=True))
            if notifier is not None:
                await notifier.aclose()
        for result in results:
            if isinstance(result, BaseException):
                raise result

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
            self._task_options,
            name,
            mode=mode,
            on_failure=on_failure,
            max_parallel=max_parallel,
        )

    def _task_options(self, task_type: str) -> dict[str, Any]:
        """The enqueue defaults of a registered task type (empty when unknown)."""
        definition = self.registry.get(task_type)
        return {} if definition is None else definition.enqueue_defaults()

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

    def _register_maintenance(self) -> None:
        app = self

        @self.task(name="tickbase.prune")
        async def prune(
            retention_days: float = PRUNE_RETENTION_DAYS, batch_size: int = 1000
        ) -> dict[str, Any]:
            """Delete finished tasks older than the retention, in bounded batches."""
            removed = await app.queue.prune(older_than_days=retention_days, batch_size=batch_size)
            return {"removed": removed, "retention_days": retention_days}

        @self.task(name="tickbase.health")
        async def health() -> dict[str, Any]:
            """Database round trip and queue backlog, kept as this task's result."""
            started = time.perf_counter()
            unfinished = await app.queue.count_unfinished()
            return {
                "database_ms": round((time.perf_counter() - started) * 1000, 3),
                "unfinished_tasks": unfinished,
                "node": app.node_id,
            }

        @self.task(name=WORKFLOW_TASK)
        async def run_workflow(workflow: str, context: TaskContext) -> dict[str, Any]:
            """Start a run of a stored workflow (the target of a schedule's fires).

            Once per task: a retry of this task finds the run it started.
            """
            task = await app.queue.get(context.task_id)
            run = await app.workflows.start(
                workflow,
                schedule_id=task.schedule_id,
                fire_at=task.fire_at,
                started_by_task=task.id,
            )
            return {"workflow": workflow, "workflow_run_id": run.id}

        self.schedule(
            "tickbase.prune",
            prune,
            every=PRUNE_EVERY_SECONDS,
            origin="builtin",
            kwargs={"retention_days": PRUNE_RETENTION_DAYS},
            description="Delete finished tasks older than the retention",
        )
        self.schedule(
            "tickbase.health",
            health,
            every=HEALTH_EVERY_SECONDS,
            origin="builtin",
            description="Database round trip and backlog",
        )


class SyncClient:
    """Blocking front end over the async core, for synchronous programs.

    Runs its own event loop in a daemon thread and the app's async code on it,
    so there is one implementation of every operation.

    Example::

        client = app.sync
        handle = client.enqueue(EnqueueRequest("tickbase.echo", {"x": 1}))
        assert client.result(handle.id, timeout=10) == {"x": 1}
    """

    def __init__(self, app: App) -> None:
        self._app = App(settings=app.settings)
        self._app.registry = app.registry
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="tickbase-sync", daemon=True
        )
        self._thread.start()
        self._lock = threading.Lock()

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def _ensure_open(self) -> None:
        with self._lock:
            if self._app._pool is None:
                self._call(self._app.open())

    def enqueue(self, request: EnqueueRequest) -> TaskHandle:
        """Enqueue one request; the handle's async methods belong to the client's loop."""
        self._ensure_open()
        [handle] = self._call(self._app.enqueue_many([request]))
        return handle

    def enqueue_many(self, requests: Sequence[EnqueueRequest]) -> list[TaskHandle]:
        """Enqueue many requests in one statement."""
        self._ensure_open()
        return self._call(self._app.enqueue_many(requests))

    def result(self, task_id: int, timeout: float | None = None) -> Any:
        """Block until the task finishes; see :meth:`TaskHandle.result`."""
        self._ensure_open()
        return self._call(self._app._await_result(task_id, timeout))

    def get(self, task_id: int) -> Task:
        self._ensure_open()
        return self._call(self._app.queue.get(task_id))

    def close(self) -> None:
        """Close connections and stop the loop thread."""
        with contextlib.suppress(RuntimeError):
            self._call(self._app.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self._loop.close()
