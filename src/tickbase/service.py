"""The one lifecycle of every long-running part of tickbase, and its retry delays.

A :class:`Service` (the worker, the ticker, the leader election, the
housekeeper, the node heartbeat, the listener, the gateway's hub) is started
once and stopped once::

    await service.start()       # returns once it is up (or raises why it could not start)
    ...
    await service.stop()        # asks it to stop, returns once it has (idempotent)

``service.state`` says where it is; ``service.failure`` holds what ended it when
it ended by itself. ``await service.run()`` does both in the foreground (a CLI
role, a test). A subclass writes :meth:`Service.serve`: it calls
:meth:`Service.mark_started` once it is up and returns soon after a stop was
requested (:attr:`Service.stopping`, :meth:`Service.sleep`). A service whose
stop must interrupt something (a blocking wait, running handlers) overrides
:meth:`Service.on_stop_requested`.

:class:`Backoff` is the delay between retries after a lost connection, shared
by every loop that retries (fetch, report, heartbeat, reconnect).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from enum import StrEnum
from typing import ClassVar

logger = logging.getLogger("tickbase")

BACKOFF_FIRST = 0.1  # seconds
BACKOFF_MAX_DEFAULT = 5.0  # seconds: the retry cap after a lost database connection


def current_task_cancelling() -> bool:
    """Whether the running asyncio task has been asked to stop (cancelled).

    A loop that catches a library's errors checks this first: psycopg may
    report a statement interrupted by cancellation as an error of its own,
    and a loop that logs it and goes on would never stop."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class Backoff:
    """Delays between attempts: ``first``, doubling, at most ``maximum``.

    Example::

        backoff = Backoff(maximum=2.0)
        await asyncio.sleep(backoff.next())  # 0.1, then 0.2, 0.4, ... 2.0
        backoff.reset()  # after a success
    """

    def __init__(self, first: float = BACKOFF_FIRST, maximum: float = BACKOFF_MAX_DEFAULT) -> None:
        self.first = first
        self.maximum = max(maximum, first)
        self._delay = first

    def next(self) -> float:
        """The delay to sleep now; the following one is twice as long (up to the maximum)."""
        delay = self._delay
        self._delay = min(self._delay * 2, self.maximum)
        return delay

    def reset(self) -> None:
        """After a success: the next failure waits ``first`` again."""
        self._delay = self.first


class ServiceState(StrEnum):
    """Where a service is in its one life."""

    NEW = "new"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"


class Service:
    """Base of tickbase's long-running parts: ``start``, ``stop``, ``state``."""

    name: ClassVar[str] = "service"

    def __init__(self) -> None:
        self.started = asyncio.Event()
        """Set once the service is up (see :meth:`mark_started`)."""
        self.stopped = asyncio.Event()
        """Set once :meth:`serve` has returned (or raised)."""
        self.failure: BaseException | None = None
        """What ended the service when it ended by itself with an error."""
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # ---- for subclasses ------------------------------------------------------------

    async def serve(self) -> None:
        """The service's work: call :meth:`mark_started` once up; return once stopping."""
        raise NotImplementedError

    def mark_started(self) -> None:
        """Tell :meth:`start` (and whoever waits on :attr:`started`) that the service is up."""
        self.started.set()

    def on_stop_requested(self) -> None:
        """Called once when a stop is requested: interrupt what :meth:`serve` waits on."""

    @property
    def stopping(self) -> bool:
        """Whether a stop was requested."""
        return self._stopping.is_set()

    async def sleep(self, seconds: float, wake: asyncio.Event | None = None) -> bool:
        """Sleep ``seconds``, or until a stop is requested or ``wake`` is set;
        ``True`` when stopping."""
        if seconds <= 0 or self._stopping.is_set() or (wake is not None and wake.is_set()):
            return self._stopping.is_set()
        if wake is None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await self._stopping.wait()
            return self._stopping.is_set()
        waiters = {asyncio.ensure_future(self._stopping.wait()), asyncio.ensure_future(wake.wait())}
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)
        return self._stopping.is_set()

    async def wait_stopping(self) -> None:
        """Return once a stop is requested."""
        await self._stopping.wait()

    # ---- for owners ----------------------------------------------------------------

    @property
    def state(self) -> ServiceState:
        if self.stopped.is_set():
            return ServiceState.FAILED if self.failure is not None else ServiceState.STOPPED
        if self._task is None:
            return ServiceState.NEW
        if self._stopping.is_set():
            return ServiceState.STOPPING
        return ServiceState.RUNNING if self.started.is_set() else ServiceState.STARTING

    async def start(self) -> None:
        """Start the service in the background; return once it is up.

        Raises what ended it when it fails before it is up. Starting it again
        while it runs only waits until it is up (a shared service, such as the
        listener, is started by each of its users); after it stopped it is
        refused: a service has one life.
        """
        if self.stopped.is_set() or (self._task is not None and self._stopping.is_set()):
            raise RuntimeError(f"{self.name} has stopped: a service has one life")
        if self._task is None:
            self._task = asyncio.create_task(self._main(), name=f"tickbase-{self.name}")
        if self.started.is_set():
            return
        up = asyncio.ensure_future(self.started.wait())
        try:
            await asyncio.wait({up, self._task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            up.cancel()
        if not self.started.is_set() and self._task.done():
            self._task.result()  # raises why it could not start

    def request_stop(self) -> None:
        """Ask the service to stop (idempotent; safe from a signal handler)."""
        if not self._stopping.is_set():
            self._stopping.set()
            self.on_stop_requested()

    async def stop(self) -> None:
        """Ask the service to stop and return once it has (idempotent).

        A failure is kept in :attr:`failure`, not raised: an owner stopping
        several services stops them all, then looks.
        """
        self.request_stop()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def wait(self) -> None:
        """Return once the service has ended; raise its failure, if any."""
        if self._task is None:
            raise RuntimeError(f"{self.name} was never started")
        await asyncio.shield(self._task)

    async def run(self) -> None:
        """Start the service and serve in the foreground until it stops.

        Cancelled (even while it starts), it stops the service before it ends."""
        try:
            await self.start()
            await self.wait()
        except asyncio.CancelledError:
            await self.stop()
            raise

    async def _main(self) -> None:
        try:
            await self.serve()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self.failure = exc
            logger.error("%s failed: %r", self.name, exc)
            raise
        finally:
            self.stopped.set()


async def stop_all(services: list[Service]) -> BaseException | None:
    """Stop ``services`` in reverse order (the last started stops first); the
    first failure among them, if any."""
    for service in reversed(services):
        await service.stop()
    return next((s.failure for s in services if s.failure is not None), None)
