"""``tickbase alerts``, run as a user would run it."""

from __future__ import annotations

import json
from typing import Any

import psycopg

from tests.e2e.conftest import run_cli


def test_rules_webhooks_and_listing(database_url: str, sql_conn: psycopg.Connection[Any]) -> None:
    rules = json.loads(run_cli("alerts", "rules", "--json", database_url=database_url).stdout)
    assert [r["name"] for r in rules] == [
        "backlog",
        "data-completeness",
        "failures-last-hour",
        "leader-missing",
        "no-worker-for-type",
        "node-down",
        "realtime-circuit-open",
        "realtime-loop-slow",
        "realtime-writer-drops",
        "schedule-lag",
    ]

    changed = run_cli(
        "alerts",
        "rule",
        "backlog",
        "--threshold",
        "7",
        "--for-seconds",
        "10",
        "--disable",
        "--json",
        database_url=database_url,
    )
    assert changed.returncode == 0, changed.stderr
    rule = json.loads(changed.stdout)
    assert (rule["threshold"], rule["forSeconds"], rule["enabled"]) == (7.0, 10.0, False)

    unknown = run_cli("alerts", "rule", "backlogg", "--threshold", "1", database_url=database_url)
    assert unknown.returncode == 1
    assert "did you mean 'backlog'?" in " ".join(unknown.stderr.split())

    refused = run_cli("alerts", "webhook-add", "ftp://x", database_url=database_url)
    assert refused.returncode == 1
    assert "invalid webhook url 'ftp://x': the scheme must be http or https, not 'ftp'" in (
        " ".join(refused.stderr.split())
    )
    assert sql_conn.execute("SELECT count(*) FROM tickbase.alert_webhooks").fetchone() == (0,)

    added = run_cli(
        "alerts",
        "webhook-add",
        "https://ops.example.com/hooks/tb?token=s3cret",
        "--json",
        database_url=database_url,
    )
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["url"] == "https://ops.example.com/hooks/tb"
    listed = run_cli("alerts", "webhooks", "--json", database_url=database_url)
    [hook] = json.loads(listed.stdout)
    assert hook["url"] == "https://ops.example.com/hooks/tb" and "s3cret" not in listed.stdout
    removed = run_cli("alerts", "webhook-remove", str(hook["id"]), database_url=database_url)
    assert removed.returncode == 0 and f"webhook {hook['id']} removed" in removed.stdout
    again = run_cli("alerts", "webhook-remove", str(hook["id"]), database_url=database_url)
    assert again.returncode == 1 and "no such webhook" in again.stderr

    sql_conn.execute(
        "INSERT INTO tickbase.alerts (rule, subject, value, message)"
        " VALUES ('node-down', 'n1', 42, 'node n1 on h1 has not heartbeated for 42 s')"
    )
    [alert] = json.loads(
        run_cli("alerts", "list", "--state", "firing", "--json", database_url=database_url).stdout
    )
    assert (alert["rule"], alert["kind"], alert["subject"], alert["state"]) == (
        "node-down",
        "node_down",
        "n1",
        "firing",
    )
    table = run_cli("alerts", "list", database_url=database_url)
    assert table.returncode == 0 and "node-down" in table.stdout
    bad_state = run_cli("alerts", "list", "--state", "open", database_url=database_url)
    assert bad_state.returncode == 1 and "must be 'firing' or 'resolved'" in bad_state.stderr
