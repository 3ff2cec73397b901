"""Database errors map to domain errors in one table (tickbase.db.errors)."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

import tickbase
from tests.conftest import fast_settings
from tickbase.db.errors import CONSTRAINTS, INVARIANT, domain_error, domain_errors
from tickbase.errors import (
    InvalidMarketData,
    InvalidSchedule,
    InvalidTask,
    InvalidToken,
    InvalidWorkflow,
)

SCHEMA_CONSTRAINTS = """
SELECT conname FROM pg_constraint
WHERE connamespace = 'tickbase'::regnamespace AND contype IN ('c', 'u', 'x')
UNION
SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
WHERE c.relnamespace = 'tickbase'::regnamespace AND i.indisunique AND NOT i.indisprimary
"""


def test_every_constraint_of_the_schema_has_a_meaning(sql_conn: psycopg.Connection[Any]) -> None:
    in_schema = {row[0] for row in sql_conn.execute(SCHEMA_CONSTRAINTS)}
    assert in_schema - set(CONSTRAINTS) == set(), "constraints with no entry in CONSTRAINTS"
    assert set(CONSTRAINTS) - in_schema == set(), "entries for constraints the schema lacks"


def violation(sql_conn: psycopg.Connection[Any], statement: str) -> psycopg.errors.IntegrityError:
    with pytest.raises(psycopg.errors.IntegrityError) as caught:
        sql_conn.execute(statement)
    return caught.value


def test_a_check_names_the_field_it_guards_not_the_constraint(
    sql_conn: psycopg.Connection[Any],
) -> None:
    exc = violation(sql_conn, "INSERT INTO tickbase.tasks (task_type, queue) VALUES ('t', 'a b')")
    error = domain_error(exc, {"queue name": "a b"})
    assert isinstance(error, InvalidTask)
    assert (error.field, error.value) == ("queue name", "a b")
    assert "tasks_queue_valid" in error.reason  # the server's message, for hand-written rows


def test_an_invariant_is_raised_as_the_database_reported_it(
    sql_conn: psycopg.Connection[Any],
) -> None:
    exc = violation(
        sql_conn, "INSERT INTO tickbase.tasks (task_type, status) VALUES ('t', 'running')"
    )
    assert CONSTRAINTS[exc.diag.constraint_name or ""] is INVARIANT
    assert domain_error(exc) is None
    with pytest.raises(psycopg.errors.CheckViolation), domain_errors():
        raise exc


def test_observation_and_kline_checks_are_market_data_errors(
    sql_conn: psycopg.Connection[Any],
) -> None:
    exc = violation(
        sql_conn,
        "INSERT INTO tickbase.observations (series, kind, observed_at, value, source)"
        " VALUES ('s', 'weather', now(), 1, 'x')",
    )
    error = domain_error(exc, {"observation kind": "weather"})
    assert isinstance(error, InvalidMarketData) and error.value == "weather"


async def test_a_duplicate_schedule_name_and_a_bad_queue_are_told_apart(database_url: str) -> None:
    app = tickbase.App(settings=fast_settings(database_url))
    async with app:
        spec = tickbase.ScheduleSpec.build("bars", "tickbase.noop", cron="*/5 * * * *")
        await app.schedules.create(spec)
        with pytest.raises(InvalidSchedule) as duplicate:
            await app.schedules.create(spec)
        assert duplicate.value.field == "name" and duplicate.value.value == "bars"
        assert duplicate.value.reason == "a schedule with this name already exists"
        # A bad queue that reaches the database (as from SQL of one's own) is not
        # reported as a duplicate name: the table names its own field.
        from tickbase.scheduler.store import Q, _fetch_one

        params = {**spec.params(None), "name": "other", "queue": "a b"}
        async with app.pool.connection() as conn:
            with pytest.raises(InvalidSchedule) as bad_queue:
                await _fetch_one(conn, Q["schedule_insert"], params)
        assert (bad_queue.value.field, bad_queue.value.value) == ("queue name", "a b")


async def test_a_token_name_in_use_is_an_invalid_token(database_url: str) -> None:
    from tickbase.gateway.auth import TokenStore

    app = tickbase.App(settings=fast_settings(database_url))
    async with app:
        tokens = TokenStore(app.pool)
        await tokens.create("viewer", name="ci")
        with pytest.raises(InvalidToken, match="a live token already has it") as caught:
            await tokens.create("admin", name="ci")
        assert isinstance(caught.value, tickbase.ConfigurationError)  # as before
        assert (caught.value.field, caught.value.value) == ("token name", "ci")


def test_workflow_checks_name_the_workflow(sql_conn: psycopg.Connection[Any]) -> None:
    exc = violation(
        sql_conn,
        "INSERT INTO tickbase.workflows (name, mode, on_failure, steps)"
        " VALUES ('eod', 'random', 'stop', '[{}]')",
    )
    error = domain_error(exc, {"workflow": "eod", "mode": "random"})
    assert isinstance(error, InvalidWorkflow)
    assert str(error).startswith("invalid workflow 'eod': mode 'random': ")
