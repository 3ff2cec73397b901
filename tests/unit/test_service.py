"""The one lifecycle of every long-running part (Service), its retry delays (Backoff)
and stop_all, on small services defined here: no database, no clock to mock."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from tickbase.service import (
    BACKOFF_FIRST,
    BACKOFF_MAX_DEFAULT,
    Backoff,
    Service,
    ServiceState,
    stop_all,
)

PROMPTLY = 5.0  # seconds: a bound that only a hang can exceed
FOREVER = 3600.0  # seconds: a sleep that only an early return can end within PROMPTLY


# ---- Backoff -----------------------------------------------------------------------


def test_backoff_doubles_up_to_the_cap() -> None:
    backoff = Backoff(first=0.1, maximum=1.0)
    assert [backoff.next() for _ in range(7)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0]


def test_backoff_reset_starts_again_from_first() -> None:
    backoff = Backoff(first=0.25, maximum=4.0)
    assert [backoff.next() for _ in range(3)] == [0.25, 0.5, 1.0]
    backoff.reset()
    assert [backoff.next() for _ in range(3)] == [0.25, 0.5, 1.0]


def test_backoff_first_above_maximum_stays_at_first() -> None:
    backoff = Backoff(first=2.0, maximum=1.0)
    assert backoff.maximum == 2.0
    assert [backoff.next() for _ in range(3)] == [2.0, 2.0, 2.0]


def test_backoff_defaults() -> None:
    backoff = Backoff()
    delays = [backoff.next() for _ in range(10)]
    assert delays[0] == BACKOFF_FIRST
    assert delays[-1] == BACKOFF_MAX_DEFAULT
    assert delays == sorted(delays)


# ---- services for the tests --------------------------------------------------------


class Gated(Service):
    """Waits for ``proceed`` before it is up, and for ``finish`` before it returns
    once stopping: every state can be observed."""

    name = "gated"

    def __init__(self, *, fail_before_up: BaseException | None = None) -> None:
        super().__init__()
        self.entered = asyncio.Event()
        self.proceed = asyncio.Event()
        self.finish = asyncio.Event()
        self.serves = 0
        self.stop_requests = 0
        self.fail_before_up = fail_before_up

    async def serve(self) -> None:
        self.serves += 1
        self.entered.set()
        await self.proceed.wait()
        if self.fail_before_up is not None:
            raise self.fail_before_up
        self.mark_started()
        await self.wait_stopping()
        await self.finish.wait()

    def on_stop_requested(self) -> None:
        self.stop_requests += 1


class Idle(Service):
    """Up at once; returns once stopping, or raises ``fail`` after ``fail_now`` is set."""

    name = "idle"

    def __init__(
        self, label: str = "idle", log: list[str] | None = None, fail: Exception | None = None
    ) -> None:
        super().__init__()
        self.label = label
        self.log = log if log is not None else []
        self.fail = fail
        self.fail_now = asyncio.Event()
        self.stop_requests = 0

    async def serve(self) -> None:
        self.mark_started()
        try:
            stopping = asyncio.ensure_future(self.wait_stopping())
            failing = asyncio.ensure_future(self.fail_now.wait())
            await asyncio.wait({stopping, failing}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            failing.cancel()
            if self.fail is not None and (self.fail_now.is_set() or self.stopping):
                raise self.fail
        finally:
            self.log.append(f"{self.label} ended")

    def on_stop_requested(self) -> None:
        self.stop_requests += 1
        self.log.append(f"{self.label} asked to stop")


# ---- the state machine -------------------------------------------------------------


async def test_states_new_starting_running_stopping_stopped() -> None:
    service = Gated()
    assert service.state is ServiceState.NEW
    starting = asyncio.create_task(service.start())
    await service.entered.wait()
    assert service.state is ServiceState.STARTING
    assert not starting.done()  # start() waits until the service is up
    service.proceed.set()
    async with asyncio.timeout(PROMPTLY):
        await starting
    assert service.state is ServiceState.RUNNING and service.started.is_set()
    service.request_stop()
    assert service.state is ServiceState.STOPPING and service.stopping
    assert not service.stopped.is_set()
    stopping = asyncio.create_task(service.stop())
    await asyncio.sleep(0)
    assert not stopping.done()  # stop() returns only once serve has returned
    service.finish.set()
    async with asyncio.timeout(PROMPTLY):
        await stopping
    assert service.state is ServiceState.STOPPED
    assert service.stopped.is_set() and service.failure is None
    assert service.serves == 1


async def test_failure_after_it_is_up_is_kept_and_the_state_is_failed() -> None:
    error = ValueError("lost the database")
    service = Idle(fail=error)
    await service.start()
    assert service.state is ServiceState.RUNNING
    service.fail_now.set()
    async with asyncio.timeout(PROMPTLY):
        await service.stopped.wait()
    assert service.state is ServiceState.FAILED
    assert service.failure is error
    await service.stop()  # kept, not raised
    assert service.failure is error and service.state is ServiceState.FAILED
    with pytest.raises(ValueError, match="lost the database"):
        await service.wait()


async def test_start_raises_why_the_service_could_not_start() -> None:
    error = ConnectionError("no database")
    service = Gated(fail_before_up=error)
    service.proceed.set()
    with pytest.raises(ConnectionError, match="no database") as raised:
        async with asyncio.timeout(PROMPTLY):
            await service.start()
    assert raised.value is error
    assert service.state is ServiceState.FAILED and service.failure is error
    assert not service.started.is_set()


async def test_starting_again_while_it_runs_only_waits() -> None:
    service = Gated()
    first = asyncio.create_task(service.start())
    second = asyncio.create_task(service.start())
    await service.entered.wait()
    await asyncio.sleep(0)
    assert not first.done() and not second.done()  # both wait for it to be up
    service.proceed.set()
    async with asyncio.timeout(PROMPTLY):
        await asyncio.gather(first, second)
        await service.start()  # already up: returns at once
    assert service.serves == 1  # one life: served once
    assert service.state is ServiceState.RUNNING
    service.finish.set()
    await service.stop()


async def test_a_stopped_service_cannot_start_again() -> None:
    service = Idle()
    await service.start()
    await service.stop()
    with pytest.raises(RuntimeError, match="one life"):
        await service.start()
    assert service.state is ServiceState.STOPPED


async def test_a_stopping_service_cannot_start_again() -> None:
    service = Gated()
    service.proceed.set()
    await service.start()
    service.request_stop()
    with pytest.raises(RuntimeError, match="one life"):
        await service.start()
    assert service.state is ServiceState.STOPPING
    service.finish.set()
    await service.stop()
    assert service.serves == 1


async def test_stop_is_idempotent_and_never_raises() -> None:
    service = Idle(fail=RuntimeError("broken on the way out"))
    await service.start()
    async with asyncio.timeout(PROMPTLY):
        await service.stop()
        await service.stop()
    assert service.state is ServiceState.FAILED
    assert isinstance(service.failure, RuntimeError)
    assert service.stop_requests == 1
    never_started = Idle()
    await never_started.stop()  # nothing to wait for; no error
    assert never_started.stopping


async def test_request_stop_calls_on_stop_requested_exactly_once() -> None:
    service = Gated()
    service.proceed.set()
    await service.start()
    service.request_stop()
    service.request_stop()
    assert service.stop_requests == 1
    service.finish.set()
    await service.stop()
    await service.stop()
    assert service.stop_requests == 1


# ---- sleep ---------------------------------------------------------------------------


async def test_sleep_returns_true_at_once_when_a_stop_was_requested() -> None:
    service = Idle()
    service.request_stop()
    async with asyncio.timeout(PROMPTLY):
        assert await service.sleep(FOREVER) is True
        assert await service.sleep(FOREVER, asyncio.Event()) is True


async def test_sleep_returns_true_early_when_a_stop_comes_during_it() -> None:
    for wake in (None, asyncio.Event()):
        service = Idle()
        sleeping = asyncio.create_task(service.sleep(FOREVER, wake))
        await asyncio.sleep(0)
        assert not sleeping.done()
        service.request_stop()
        async with asyncio.timeout(PROMPTLY):
            assert await sleeping is True


async def test_sleep_returns_false_early_on_the_wake_event() -> None:
    service = Idle()
    wake = asyncio.Event()
    tasks_before = len(asyncio.all_tasks())
    sleeping = asyncio.create_task(service.sleep(FOREVER, wake))
    await asyncio.sleep(0)
    assert not sleeping.done()
    wake.set()
    async with asyncio.timeout(PROMPTLY):
        assert await sleeping is False
    assert len(asyncio.all_tasks()) == tasks_before  # its waiters were cleaned up
    async with asyncio.timeout(PROMPTLY):
        assert await service.sleep(FOREVER, wake) is False  # already set: at once


async def test_sleep_returns_false_when_the_time_is_up() -> None:
    service = Idle()
    assert await service.sleep(0) is False
    assert await service.sleep(-1) is False
    assert await service.sleep(0.01) is False
    wake = asyncio.Event()
    assert await service.sleep(0.01, wake) is False
    assert not wake.is_set() and not service.stopping


# ---- run in the foreground -----------------------------------------------------------


async def test_run_serves_in_the_foreground_until_stopped() -> None:
    service = Idle()
    running = asyncio.create_task(service.run())
    async with asyncio.timeout(PROMPTLY):
        await service.started.wait()
    assert not running.done() and service.state is ServiceState.RUNNING
    service.request_stop()
    async with asyncio.timeout(PROMPTLY):
        await running
    assert service.state is ServiceState.STOPPED


async def test_run_raises_the_failure() -> None:
    service = Idle(fail=KeyError("gone"))
    running = asyncio.create_task(service.run())
    await service.started.wait()
    service.fail_now.set()
    with pytest.raises(KeyError, match="gone"):
        async with asyncio.timeout(PROMPTLY):
            await running


async def test_cancelling_run_stops_the_service() -> None:
    """Cancelled as soon as the service is up (run() may still be in start())."""
    log: list[str] = []
    service = Idle(log=log)
    running = asyncio.create_task(service.run())
    await service.started.wait()
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert service.state is ServiceState.STOPPED
    assert log == ["idle asked to stop", "idle ended"]


async def test_cancelling_run_while_it_starts_stops_the_service() -> None:
    """Old code: the cancellation reached run() inside start(), outside its
    try: the service kept running in the background, orphaned."""
    service = Gated()
    running = asyncio.create_task(service.run())
    await service.entered.wait()
    assert service.state is ServiceState.STARTING
    running.cancel()
    await asyncio.sleep(0)
    assert service.stopping  # the cancelled run() asked it to stop
    service.proceed.set()
    service.finish.set()
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(PROMPTLY):
            await running
    assert service.state is ServiceState.STOPPED and service.stop_requests == 1


async def test_wait_before_start_is_refused() -> None:
    with pytest.raises(RuntimeError, match="never started"):
        await Idle().wait()


# ---- stop_all --------------------------------------------------------------------------


async def test_stop_all_stops_in_reverse_order_and_returns_the_first_failure() -> None:
    log: list[str] = []
    first_error, second_error = ValueError("b failed"), ValueError("c failed")
    services = [
        Idle("a", log),
        Idle("b", log, fail=first_error),
        Idle("c", log, fail=second_error),
    ]
    for service in services:
        await service.start()
    async with asyncio.timeout(PROMPTLY):
        failure = await stop_all(list(services))
    # One after the other: each has ended before the one before it is asked to stop.
    assert log == [
        "c asked to stop",
        "c ended",
        "b asked to stop",
        "b ended",
        "a asked to stop",
        "a ended",
    ]
    assert failure is first_error  # the first in the list, though c failed first
    assert [s.state for s in services] == [
        ServiceState.STOPPED,
        ServiceState.FAILED,
        ServiceState.FAILED,
    ]


async def test_stop_all_returns_none_without_failures() -> None:
    services = [Idle("a"), Idle("b")]
    for service in services:
        await service.start()
    assert await stop_all(services) is None
    assert all(s.state is ServiceState.STOPPED for s in services)


async def test_current_task_cancelling_sees_a_cancel_that_was_swallowed() -> None:
    """A loop can tell it was asked to stop even when a library swallowed the
    CancelledError (psycopg_pool's getconn race): ``cancelling()`` stays set."""
    from tickbase.service import current_task_cancelling

    seen: list[bool] = []
    ready = asyncio.Event()

    async def swallower() -> None:
        assert not current_task_cancelling()
        ready.set()
        with contextlib.suppress(asyncio.CancelledError):  # as the pool did
            await asyncio.sleep(10)
        seen.append(current_task_cancelling())

    task = asyncio.create_task(swallower())
    await ready.wait()
    task.cancel()
    await task
    assert seen == [True]
    assert not current_task_cancelling()  # the test's own task was never cancelled
