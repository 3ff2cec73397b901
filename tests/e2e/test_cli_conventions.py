"""What a mature command line does: ``--version``, cron nicknames, readable messages."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

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
