"""What a mature command line does: ``--version``, cron nicknames, readable messages."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.e2e.conftest import run_cli, tickbase_env
from tickbase._version import __version__
from tickbase.db.embedded import EmbeddedServer


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


WORKFLOW_YAML = """\
name: eod
mode: parallel
steps:
  - {name: bars, task_type: tickbase.echo, payload: {symbol: ES}}
  - {name: report, task_type: tickbase.echo, after: [bars]}
"""


def test_workflows_create_from_yaml_and_json(
    database_url: str, sql_conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    path = tmp_path / "eod.yaml"
    path.write_text(WORKFLOW_YAML)
    done = run_cli("workflows", "create", str(path), database_url=database_url)
    assert done.returncode == 0, done.stderr
    assert "workflow eod stored: 2 steps" in done.stdout

    path = tmp_path / "one.json"
    path.write_text(
        json.dumps({"name": "one", "steps": [{"name": "a", "taskType": "tickbase.echo"}]})
    )
    done = run_cli("workflows", "create", str(path), database_url=database_url)
    assert done.returncode == 0, done.stderr
    assert "workflow one stored: 1 step" in done.stdout
    rows = sql_conn.execute("SELECT name, mode FROM tickbase.workflows ORDER BY name").fetchall()
    assert rows == [("eod", "parallel"), ("one", "serial")]


@pytest.mark.parametrize(
    ("name", "text", "fragment"),
    [
        ("bad.json", '{"name": "x", "steps": [', "not valid JSON"),
        ("bad.yaml", "name: x\nsteps: [a, ", "not valid YAML"),
        ("bad.toml", "name = 'x'", "use a .json, .yaml or .yml file"),
        ("no-steps.yaml", "name: x\n", "steps: Field required"),
        (
            "cycle.yaml",
            "name: x\nsteps:\n"
            "  - {name: a, task_type: tickbase.echo, after: [b]}\n"
            "  - {name: b, task_type: tickbase.echo, after: [a]}\n",
            "cycle",
        ),
        (
            "unknown.yaml",
            "name: x\nsteps:\n  - {name: a, task_type: tickbase.ecko}\n",
            "unknown task type 'tickbase.ecko'",
        ),
    ],
)
def test_workflows_create_names_the_problem(
    database_url: str,
    sql_conn: psycopg.Connection[Any],
    tmp_path: Path,
    name: str,
    text: str,
    fragment: str,
) -> None:
    path = tmp_path / name
    path.write_text(text)
    done = run_cli("workflows", "create", str(path), database_url=database_url)
    assert done.returncode == 1, done.stdout
    assert "Traceback" not in done.stderr and fragment in done.stderr
    assert sql_conn.execute("SELECT count(*) FROM tickbase.workflows").fetchone() == (0,)


@pytest.mark.parametrize(
    "args",
    [
        ("tasks", "list"),
        ("enqueue", "tickbase.echo"),
        ("schedules", "list", "--json"),
        ("stats",),
        ("db", "migrate"),
        ("db", "sql", "SELECT 1"),
        ("db", "migrations"),
        ("bench", "queue"),
    ],
)
def test_one_shot_commands_never_start_the_embedded_server(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    home = tmp_path / "home"
    done = run_cli(*args, env=tickbase_env(None, TICKBASE_HOME=str(home)))
    assert done.returncode == 1, done.stdout
    assert "Traceback" not in done.stderr
    [line] = done.stderr.strip().splitlines()
    assert (
        f"the embedded PostgreSQL of {home} is not running "
        "(`tickbase db start` or `tickbase up` starts it)"
    ) in line
    assert EmbeddedServer(home).running() is None
    assert not (home / "pg" / "PG_VERSION").exists()


def test_db_sql_runs_the_users_sql(database_url: str) -> None:
    done = run_cli(
        "db",
        "sql",
        "SELECT 1 AS one, 'a' AS letter, 2.5::numeric AS n",
        "--json",
        database_url=database_url,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [{"one": 1, "letter": "a", "n": 2.5}]
    shown = run_cli(
        "db",
        "sql",
        "SELECT version, name FROM tickbase.schema_migrations ORDER BY version",
        database_url=database_url,
    )
    assert shown.returncode == 0 and "initial" in shown.stdout
    bad = run_cli("db", "sql", "SELEC 1", database_url=database_url)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert 'syntax error at or near "SELEC"' in bad.stderr


def test_db_migrations_lists_and_prints_them(database_url: str) -> None:
    listed = run_cli("db", "migrations", "--json", database_url=database_url)
    assert listed.returncode == 0, listed.stderr
    migrations = json.loads(listed.stdout)
    assert migrations[0]["version"] == 1 and migrations[0]["name"] == "initial"
    # Either key convention: the --json keys are being changed to camelCase elsewhere.
    assert all(datetime.fromisoformat(m.get("applied_at") or m["appliedAt"]) for m in migrations)
    printed = run_cli("db", "migrations", "--sql")
    assert printed.returncode == 0 and "-- 0001_initial.sql" in printed.stdout


def test_cancelling_twice_says_it_has_already_been_cancelled(database_url: str) -> None:
    done = run_cli("enqueue", "tickbase.echo", "--json", database_url=database_url)
    assert done.returncode == 0, done.stderr
    task_id = str(json.loads(done.stdout)["id"])
    assert run_cli("tasks", "cancel", task_id, database_url=database_url).returncode == 0
    again = run_cli("tasks", "cancel", task_id, database_url=database_url)
    assert again.returncode == 1
    assert f"cannot cancel task {task_id}: it has already been cancelled" in again.stderr
