"""``tickbase schedules`` as other tools call it."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from tests.e2e.conftest import run_cli


def rows(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT name, cron, interval_seconds, enabled, paused FROM tickbase.schedules ORDER BY id"
    ).fetchall()


def test_add_list_control_trigger_remove(
    database_url: str, sql_conn: psycopg.Connection[Any]
) -> None:
    added = run_cli(
        "schedules",
        "add",
        "btc-1h",
        "--task",
        "tickbase.echo",
        "--cron",
        "0 * * * *",
        "--tz",
        "America/New_York",
        "--payload",
        '{"symbol": "BTCUSDT"}',
        "--queue",
        "marketdata",
        "--json",
        database_url=database_url,
    )
    assert added.returncode == 0, added.stderr
    created = json.loads(added.stdout)
    assert (created["name"], created["kind"], created["timezone"], created["queue"]) == (
        "btc-1h",
        "cron",
        "America/New_York",
        "marketdata",
    )
    assert (
        run_cli(
            "schedules",
            "add",
            "tick",
            "--task",
            "tickbase.noop",
            "--every",
            "15",
            database_url=database_url,
        ).returncode
        == 0
    )
    assert (
        run_cli(
            "schedules",
            "add",
            "by-hand",
            "--task",
            "tickbase.noop",
            "--manual",
            database_url=database_url,
        ).returncode
        == 0
    )

    listed = json.loads(run_cli("schedules", "list", "--json", database_url=database_url).stdout)
    assert {s["name"]: s["status"] for s in listed} == {
        "btc-1h": "pending",
        "tick": "pending",
        "by-hand": "pending",
    }
    by_hand = next(s for s in listed if s["name"] == "by-hand")
    assert by_hand["kind"] == "manual" and by_hand["nextFireAt"] is None

    for action, status in (
        ("pause", "paused"),
        ("resume", "pending"),
        ("disable", "disabled"),
        ("enable", "pending"),
    ):
        result = run_cli("schedules", action, "tick", "--json", database_url=database_url)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["status"] == status

    triggered = json.loads(
        run_cli("schedules", "trigger", "by-hand", "--json", database_url=database_url).stdout
    )
    task = sql_conn.execute(
        "SELECT schedule_id IS NOT NULL, fire_at FROM tickbase.tasks WHERE id = %s",
        (triggered["taskId"],),
    ).fetchone()
    assert task is not None and task[0] is True

    shown = json.loads(
        run_cli("schedules", "show", "by-hand", "--json", database_url=database_url).stdout
    )
    assert shown["stats"]["pending"] == 1 and shown["executions"][0]["manual"] is True
    assert [e["event"] for e in shown["events"]] == ["triggered"]

    removed = run_cli("schedules", "remove", "tick", "--json", database_url=database_url)
    assert removed.returncode == 0
    names = [
        s["name"]
        for s in json.loads(
            run_cli("schedules", "list", "--json", database_url=database_url).stdout
        )
    ]
    assert names == ["btc-1h", "by-hand"]
    table = run_cli("schedules", "list", database_url=database_url)
    assert "btc-1h" in table.stdout and "America/New_York" in table.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cron", "61 * * * *"], "minute field '61' is invalid"),
        (["--cron", "* * * *"], "has 4 fields"),
        (["--every", "0"], "invalid interval"),
        (["--every", "-3"], "invalid interval"),
        (["--cron", "* * * * *", "--every", "5"], "not both"),
        (["--manual", "--cron", "* * * * *"], "manual schedule never fires by itself"),
        (["--cron", "* * * * *", "--tz", "Nowhere/City"], "unknown time zone"),
        (["--cron", "* * * * *", "--payload", "{bad"], "not valid JSON"),
        ([], "give a cron expression"),
        (["--cron", "* * * * *"], "already exists"),
    ],
)
def test_bad_input_refused_and_store_unchanged(
    database_url: str, sql_conn: psycopg.Connection[Any], args: list[str], message: str
) -> None:
    assert (
        run_cli(
            "schedules",
            "add",
            "existing",
            "--task",
            "t",
            "--every",
            "60",
            database_url=database_url,
        ).returncode
        == 0
    )
    before = rows(sql_conn)
    name = "existing" if message == "already exists" else "new"
    result = run_cli("schedules", "add", name, "--task", "t", *args, database_url=database_url)
    assert result.returncode == 1
    assert message in " ".join(result.stderr.split())
    assert rows(sql_conn) == before


def test_unknown_schedule_suggests_a_name(database_url: str) -> None:
    run_cli("schedules", "add", "eth-4h", "--task", "t", "--every", "60", database_url=database_url)
    result = run_cli("schedules", "pause", "eth-4", database_url=database_url)
    assert result.returncode == 1 and "did you mean 'eth-4h'" in result.stderr
