"""What ``@app.task`` gives the user, without a database.

A task function called directly runs the handler; ``request`` splits keys
into enqueue options and payload (a handler parameter named like an option
stays payload); the task's name is stable across ``python script.py`` and
``--app script:app``; handles compare by id. Also the messages of the errors
a user meets first, the schedule status shown, and a step's duration.
"""

from __future__ import annotations

import sys
import types
from dataclasses import FrozenInstanceError
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import tickbase
from tickbase.errors import InvalidTask, ServerNotRunning, UnknownTaskType
from tickbase.scheduler.models import Schedule, ScheduleSpec, displayed_status
from tickbase.tasks import TaskHandle, default_task_name
from tickbase.workflows.api import StepState

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def app() -> tickbase.App:
    return tickbase.App()


def test_calling_a_task_function_runs_the_handler_and_keeps_its_metadata(
    app: tickbase.App,
) -> None:
    @app.task(name="math.add")
    def add(a: int, b: int = 1) -> int:
        """Add two numbers."""
        return a + b

    assert add(2, b=3) == 5 and add(4) == 5
    assert add.name == "math.add"
    assert add.__doc__ == "Add two numbers." and add.__name__ == "add"


def test_request_splits_enqueue_options_from_payload(app: tickbase.App) -> None:
    @app.task(name="bars.fetch", queue="marketdata", priority=3, retries=2, timeout=30)
    async def fetch(symbol: str, priority: str = "low") -> None: ...

    request = fetch.request(
        {"symbol": "ESZ5", "priority": "high", "queue": "urgent", "delay": 5, "dedupe_key": "k"}
    )
    # ``priority`` is a handler parameter: payload, and the task keeps its default.
    assert request.payload == {"symbol": "ESZ5", "priority": "high"}
    assert (request.task_type, request.queue, request.priority) == ("bars.fetch", "urgent", 3)
    assert (request.delay, request.dedupe_key) == (5, "k")
    assert (request.max_attempts, request.timeout) == (3, 30)


def test_request_defaults_come_from_the_decorator(app: tickbase.App) -> None:
    @app.task(name="plain")
    async def plain(**anything: Any) -> None: ...

    request = plain.request({"x": 1})
    assert request.payload == {"x": 1}
    assert (request.queue, request.priority, request.max_attempts, request.retry_delay) == (
        "default",
        0,
        1,
        1.0,
    )


def test_a_bad_option_given_at_enqueue_is_refused_naming_it(app: tickbase.App) -> None:
    @app.task(name="t.opt")
    async def handler(n: int) -> int:
        return n

    with pytest.raises(InvalidTask) as refused:
        handler.request({"n": 1, "priority": "urgent"})
    assert "priority" in str(refused.value)
    with pytest.raises(InvalidTask, match="queue"):
        handler.request({"n": 1, "queue": "has spaces"})


def test_task_names_are_module_and_qualname() -> None:
    def outer() -> None: ...

    assert default_task_name(outer) == (
        f"{__name__}.test_task_names_are_module_and_qualname.<locals>.outer"
    )


@pytest.mark.parametrize(
    ("spec_name", "file", "expected"),
    [
        ("jobs.nightly", "/srv/jobs/nightly.py", "jobs.nightly.run"),  # python -m jobs.nightly
        ("jobs.__main__", "/srv/jobs/__main__.py", "jobs.run"),  # python -m jobs
        (None, "/srv/scripts/collect.py", "collect.run"),  # python collect.py
        (None, None, "__main__.run"),  # an interactive session
    ],
)
def test_a_script_task_is_named_as_its_importer_would_name_it(
    monkeypatch: pytest.MonkeyPatch, spec_name: str | None, file: str | None, expected: str
) -> None:
    main = types.ModuleType("__main__")
    main.__spec__ = types.SimpleNamespace(name=spec_name) if spec_name else None  # type: ignore[assignment]
    if file is not None:
        main.__file__ = file
    monkeypatch.setitem(sys.modules, "__main__", main)

    def run() -> None: ...

    run.__module__ = "__main__"
    run.__qualname__ = "run"
    assert default_task_name(run) == expected


def test_handles_compare_and_hash_by_task_id(app: tickbase.App) -> None:
    first, same, other = TaskHandle(app, 7), TaskHandle(app, 7, created=False), TaskHandle(app, 8)
    assert first == same and first != other and first != 7
    assert len({first, same, other}) == 2
    assert repr(first) == "TaskHandle(id=7)"
    assert first.created is True and same.created is False


def test_unknown_task_type_messages_suggest_a_close_name() -> None:
    error = UnknownTaskType("bars.fetc", ["bars.fetch", "ticks.fetch"])
    assert str(error) == (
        "no handler registered for task type bars.fetc (did you mean 'bars.fetch'?)"
    )
    assert isinstance(error, LookupError) and error.task_type == "bars.fetc"
    assert str(UnknownTaskType("zzz", ["bars.fetch"])) == "no handler registered for task type zzz"
    assert str(UnknownTaskType("x y", reason="names have no spaces")) == (
        "unknown task type 'x y': names have no spaces"
    )


def test_server_not_running_says_how_to_start_it() -> None:
    error = ServerNotRunning("/srv/tickbase")
    assert error.home == "/srv/tickbase"
    assert str(error) == (
        "the embedded PostgreSQL of /srv/tickbase is not running "
        "(`tickbase db start` or `tickbase up` starts it)"
    )


@pytest.mark.parametrize(
    ("enabled", "paused", "latest", "shown"),
    [
        (False, True, "running", "disabled"),  # disabled wins over everything
        (True, True, "failed", "paused"),
        (True, False, None, "pending"),  # never fired yet
        (True, False, "pending", "pending"),
        (True, False, "retrying", "pending"),
        (True, False, "running", "running"),
        (True, False, "succeeded", "succeeded"),
        (True, False, "failed", "failed"),
        (True, False, "cancelled", "failed"),
    ],
)
def test_displayed_schedule_status(
    enabled: bool, paused: bool, latest: str | None, shown: str
) -> None:
    assert displayed_status(enabled, paused, latest) == shown


def test_schedule_to_dict_is_json_ready() -> None:
    spec = ScheduleSpec.build("bars", "bars.fetch", every=30, payload={"symbol": "ESZ5"})
    schedule = Schedule(
        id=3,
        spec=spec,
        paused=False,
        next_fire_at=T0 + timedelta(seconds=30),
        last_fire_at=None,
        created_at=T0,
        updated_at=T0,
        removed_at=None,
        status="pending",
    )
    out = schedule.to_dict()
    assert schedule.name == "bars"
    assert (out["id"], out["name"], out["kind"], out["interval_seconds"]) == (
        3,
        "bars",
        "interval",
        30,
    )
    assert out["payload"] == {"symbol": "ESZ5"}
    assert out["next_fire_at"] == "2025-03-01T12:00:30+00:00"
    assert out["created_at"] == out["updated_at"] == "2025-03-01T12:00:00+00:00"
    assert (out["last_fire_at"], out["removed_at"], out["status"]) == (None, None, "pending")
    assert not any(isinstance(v, datetime) for v in out.values())


def test_step_duration_only_once_finished() -> None:
    running = StepState("a", "running", 1, "running", None, 1, T0, None)
    done = StepState("a", "succeeded", 1, "succeeded", 2, 1, T0, T0 + timedelta(seconds=1.5))
    waiting = StepState("b", "pending", None, None, None)
    assert running.duration is None and waiting.duration is None
    assert done.duration == 1.5
    with pytest.raises(FrozenInstanceError):
        done.status = "failed"  # type: ignore[misc]
