"""What a mature command line does: ``--version``, cron nicknames, readable messages."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg

from tests.e2e.conftest import run_cli
from tickbase._version import __version__


def test_version_prints_name_and_version() -> None:
    done = run_cli("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"tickbase {__version__}"


def test_a_schedule_takes_a_cron_nickname(
    database_url: str, sql_conn: psycopg.Connection[Any]
) -> None:
    added = run_cli(
        "schedules",
        "add",
        "nightly",
        "--task",
        "tickbase.echo",
        "--cron",
        "@daily",
        "--json",
        database_url=database_url,
    )
    assert added.returncode == 0, added.stderr
    # Read back from the table: the --json keys are another issue's business.
    [(stored, fire)] = sql_conn.execute(
        "SELECT cron, next_fire_at AT TIME ZONE 'UTC' FROM tickbase.schedules"
    ).fetchall()
    assert stored == "@daily"
    assert isinstance(fire, datetime) and (fire.hour, fire.minute, fire.second) == (0, 0, 0)
