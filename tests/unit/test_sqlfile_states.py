"""Named SQL files load strictly; the state table matches the documented machine."""

from __future__ import annotations

import types

import pytest

import tickbase
from tickbase.db.migrate import available_migrations
from tickbase.db.sqlfile import load_queries
from tickbase.queue.states import TRANSITIONS, can_transition
from tickbase.types import FINAL_STATUSES, TaskStatus


def test_queue_queries_load_and_are_named_noun_verb() -> None:
    queries = load_queries("tickbase.queue")
    assert {"task_enqueue_many", "task_enqueue_one", "task_claim", "task_finish_many"} <= set(
        queries
    )
    assert all(name.startswith(("task_", "queue_limit", "rate_limit_")) for name in queries)
    assert all(not body.rstrip().endswith(";") for body in queries.values())


def test_final_states_never_change() -> None:
    for status in FINAL_STATUSES:
        assert TRANSITIONS[status] == frozenset()
        for other in TaskStatus:
            assert not can_transition(status, other)


def test_running_can_end_every_way() -> None:
    assert TRANSITIONS[TaskStatus.RUNNING] >= {
        TaskStatus.SUCCEEDED,
        TaskStatus.FAILED,
        TaskStatus.RETRYING,
        TaskStatus.CANCELLED,
    }
    assert not can_transition(TaskStatus.PENDING, TaskStatus.SUCCEEDED)


def test_migrations_are_numbered_from_one_without_gaps() -> None:
    versions = [m.version for m in available_migrations()]
    assert len(set(versions)) == len(versions)
    assert sorted(versions) == list(range(1, max(versions) + 1))


def test_public_api_is_exactly_all() -> None:
    exported = {
        name
        for name in dir(tickbase)
        if not name.startswith("_") and not isinstance(getattr(tickbase, name), types.ModuleType)
    }
    assert set(tickbase.__all__) - {"__version__"} == exported


@pytest.mark.parametrize(
    "bad", [{"poll_interval": 0}, {"lease_seconds": -1}, {"result_max_bytes": 10}]
)
def test_settings_name_the_bad_key(bad: dict[str, float]) -> None:
    from tickbase.errors import ConfigurationError
    from tickbase.settings import load_settings

    with pytest.raises(ConfigurationError) as excinfo:
        load_settings(**bad)
    [key] = bad
    assert key in str(excinfo.value)
