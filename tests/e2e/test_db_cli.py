"""``tickbase db status`` without a server, and commands given an unreachable server
(issue 13, item 6)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.conftest import run_cli, tickbase_env
from tickbase.db.embedded import EmbeddedServer

UNREACHABLE = "postgresql://u:secret@127.0.0.1:1/x"


def test_db_status_reports_a_stopped_embedded_server_without_starting_it(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = tickbase_env(None, TICKBASE_HOME=str(home))
    server = EmbeddedServer(home)
    try:
        as_json = run_cli("db", "status", "--json", env=env)
        assert as_json.returncode == 0, as_json.stderr
        status = json.loads(as_json.stdout)
        assert status["server"] == {
            "kind": "embedded",
            "home": str(home),
            "running": False,
            "pid": None,
            "port": None,
            "url": None,
        }
        assert status["schemaVersion"] is None and status["codeVersion"] >= 1

        as_table = run_cli("db", "status", env=env)
        assert as_table.returncode == 0, as_table.stderr
        assert "is not running" in as_table.stdout

        assert server.running() is None
        assert not (server.pgdata / "PG_VERSION").exists()
    finally:
        server.stop()


@pytest.mark.parametrize(
    "command",
    [
        ("tasks", "list"),
        ("tasks", "list", "--json"),
        ("db", "status", "--json"),
        ("db", "migrate"),
        ("stats",),
        ("worker",),
    ],
)
def test_an_unreachable_database_url_is_one_line_naming_host_and_port(
    command: tuple[str, ...],
) -> None:
    done = run_cli(*command, database_url=UNREACHABLE)
    assert done.returncode == 1
    message = "cannot connect to PostgreSQL at 127.0.0.1:1: Connection refused"
    if "--json" in command:  # the error is JSON too, in the HTTP API's shape
        [line] = done.stderr.strip().splitlines()
        assert json.loads(line) == {
            "error": {"code": "UNAVAILABLE", "message": message, "details": None}
        }
    else:
        assert done.stderr.strip().splitlines() == [f"error: {message}"]
    assert done.stdout == ""
    assert "secret" not in done.stdout + done.stderr
