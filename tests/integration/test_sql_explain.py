"""Every named statement of every block plans against the migrated schema.

The ``.sql`` files are found by globbing the package, so a new block's file is
covered without touching this test. Each statement is EXPLAINed (planned, never
run: nothing is written) with representative parameters built from the names
it uses, so a statement that no longer matches the schema fails here, with its
file and name in the test id, before anything executes it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

import tickbase
from tests.conftest import migrated_database
from tickbase.db.sqlfile import load_queries

PACKAGE_DIR = Path(tickbase.__file__).parent
# Migrations are schema scripts, not files of named statements.
EXCLUDED = ("db/migrations/",)


def _sql_files() -> list[str]:
    """Every ``.sql`` file of every block, as ``block/file.sql`` (path below the package)."""
    found = (path.relative_to(PACKAGE_DIR).as_posix() for path in PACKAGE_DIR.rglob("*.sql"))
    return sorted(rel for rel in found if not rel.startswith(EXCLUDED))


def _load(rel: str) -> dict[str, str]:
    block, _, filename = rel.rpartition("/")
    return load_queries("tickbase." + block.replace("/", "."), filename)


SQL_FILES = _sql_files()
STATEMENTS: dict[str, dict[str, str]] = {rel: _load(rel) for rel in SQL_FILES}
CASES = [
    pytest.param(rel, name, id=f"{rel}:{name}")
    for rel, queries in STATEMENTS.items()
    for name in sorted(queries)
]

PARAMETER = re.compile(r"%\((\w+)\)s")
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

# One representative value per parameter name, shared by every file. A value
# only has to have the right type: EXPLAIN binds and plans, it does not run.
# Strings go out untyped, so a string stands for text, jsonb (a JSON text) or
# an enum-like text column alike; lists are arrays (for ANY(...) and text[]).
PARAMS: dict[str, Any] = {
    # tasks (queue, gateway)
    "task_type": "t",
    "queue": "default",
    "queues": ["default"],
    "types": None,
    "defined": ["t"],
    "priority": 0,
    "payload": "{}",
    "max_attempts": 1,
    "retry_delay": 1.0,
    "timeout": None,
    "run_at": None,
    "delay": None,
    "dedupe_key": None,
    "dedupe_keys": ["k"],
    "request_id": "r1",
    "concurrency_key": None,
    "concurrency_limit": None,
    "concurrency": 2,
    "limits": "[]",
    "batch": json.dumps([{"task_type": "t", "payload": {}}]),
    "unless_leader": True,
    "dead_nodes": ["n"],
    "lease_seconds": 30.0,
    "older_than_seconds": 60.0,
    "ids": [1],
    "attempts": [1],
    "outcomes": ["succeeded"],
    "results": ["null"],
    "errors": [None],
    "delays": [None],
    "idle_ms": 1500,
    "detail": None,
    "status": "succeeded",
    # common
    "id": 1,
    "name": "n",
    "limit": 10,
    "after": None,
    "before_id": None,
    "after_id": 0,
    "ms": "3000",
    "name_contains": None,
    "percent": 1.0,
    "up_to_id": None,
    "created_after": None,
    "created_before": None,
    "payload_contains": '{"symbol": "BTCUSDT"}',
    "result_contains": None,
    "actor": "admin",
    "actor_token_id": 1,
    "filter": "{}",
    "matched": 1,
    "changed": 1,
    "now": NOW,
    "lock_key": 1,
    "node_id": "n",
    "enabled": True,
    # cluster: leases and nodes
    "holder": "n",
    "names": ["realtime:BTCUSDT"],
    "lease": "leader",
    "token": 1,
    "ttl": 10.0,
    "host": "h",
    "pid": 1,
    "roles": ["worker"],
    "version": "0",
    "task_types": "{}",
    "metrics": "{}",
    # cluster: alerts
    "kinds": None,
    "threshold": 1.0,
    "for_seconds": 1.0,
    "url": "http://x",
    "oks": [True],
    "retry_in": [None],
    # gateway: auth and requests
    "role": "viewer",
    "token_hash": b"\0" * 32,
    "prefix": "tb_abcdef",
    "secret": b"\0" * 32,
    "user_id": "u",
    "action": "enqueue",
    # scheduler
    "cron": "* * * * *",
    "interval_seconds": None,
    "timezone": "UTC",
    "paused": None,
    "max_retries": 0,
    "retry_interval": 1.0,
    "misfire_grace_seconds": 60.0,
    "coalesce": False,
    "max_instances": 1,
    "next_fire_at": NOW,
    "description": None,
    "origin": "api",
    "include_removed": False,
    "skip": ["marketdata.%"],
    "task_id": None,
    "before": NOW,
    "advances": json.dumps(
        [
            {
                "id": 1,
                "expected": NOW.isoformat(),
                "next_fire_at": (NOW + timedelta(minutes=1)).isoformat(),
                "last_fire_at": NOW.isoformat(),
            }
        ]
    ),
    "events": json.dumps(
        [
            {
                "schedule_id": 1,
                "event": "fired",
                "fire_at": NOW.isoformat(),
                "task_id": 1,
                "detail": {},
            }
        ]
    ),
    # workflows
    "mode": "serial",
    "on_failure": "stop",
    "max_parallel": None,
    "schedule_id": None,
    "fire_at": None,
    "started_by_task": None,
    "done": ["a"],
    "changes": json.dumps([{"step": "a", "status": "enqueued", "task_id": 1}]),
    "steps": json.dumps([]),  # a stored definition's steps
    # queue: fires and workflow steps (task_enqueue_linked)
    "tasks": json.dumps(
        [
            {
                "id": None,
                "task_type": "t",
                "queue": "default",
                "priority": 0,
                "payload": {},
                "max_attempts": 1,
                "retry_delay": 1.0,
                "timeout": None,
                "schedule_id": 1,
                "fire_at": NOW.isoformat(),
                "workflow_run_id": None,
                "step": None,
                "inputs": None,
            }
        ]
    ),
    # marketdata
    "source": "replay",
    "symbol": "GOOG",
    "open_times": [NOW],
    "opens": [1.0],
    "highs": [1.0],
    "lows": [1.0],
    "closes": [1.0],
    "volumes": [0.0],
    "anomaly_move": 0.2,
    "durable": True,
    "backfilled": False,
    "live": True,
    "new_state": "{}",
    "new_last": NOW,
    "state_from": NOW,
    "close_times": [None],
    "quote_volumes": [None],
    "trade_counts": [None],
    "taker_base": [None],
    "taker_quote": [None],
    "filled": [False],
    "series": "fear_greed",
    "times": [NOW],
    "values": [50.0],
    "labels": ["Neutral"],
    "step": 3600,
    "key": "k",
    "value": "1",
    "last_open_time": NOW,
    "months": False,
    "scan_start": NOW - timedelta(days=1),
    "scan_end": NOW,
    "sample": 500,
    # a time window (marketdata reads, bench cron)
    "start": NOW - timedelta(hours=1),
    "end": NOW,
}

# Names that mean different things in different files: no shared value, so a
# new file using one of them must say which it means.
OVERRIDES: dict[str, dict[str, Any]] = {
    "cluster/alerts.sql": {"state": None},  # an alert's state filter (text)
    "cluster/queries.sql": {"interval": 5.0},  # a node's heartbeat interval (seconds)
    "marketdata/queries.sql": {
        "interval": "1d",  # a candle interval
        "kind": "sentiment",  # an observation kind
        "state": "{}",  # an indicator's state (jsonb)
        "origin": datetime(1970, 1, 1, tzinfo=UTC),  # the buckets' origin (date_bin)
    },
    "scheduler/queries.sql": {"kind": "cron"},  # a schedule's kind
    # the dashboard bench's synthetic load: how many rows, after which id
    "bench/dashboard_queries.sql": {
        "count": 10,
        "first_id": 0,
        "waiting_after": 9,
        "step": timedelta(seconds=1),
    },
}


def params_for(rel: str, name: str) -> dict[str, Any]:
    """The parameters statement ``name`` of ``rel`` uses, each with its value."""
    table = {**PARAMS, **OVERRIDES.get(rel, {})}
    used = sorted(set(PARAMETER.findall(STATEMENTS[rel][name])))
    missing = [param for param in used if param not in table]
    if missing:
        pytest.fail(
            f"{rel}:{name} uses parameter(s) {', '.join(missing)} with no representative"
            f" value: add them to PARAMS in {Path(__file__).name}"
            f" (or to OVERRIDES[{rel!r}] when the name means something else elsewhere)",
            pytrace=False,
        )
    return {param: table[param] for param in used}


@pytest.fixture(scope="module")
def explain_conn(server_url: str, template_db: str) -> Iterator[psycopg.Connection[Any]]:
    """One migrated database for the whole module: EXPLAIN writes nothing, so the
    statements can share it (a clone per statement would cost a second each)."""
    with (
        migrated_database(server_url, template_db, prefix="explain") as url,
        psycopg.connect(url, autocommit=True) as conn,
    ):
        yield conn


@pytest.mark.parametrize(("rel", "name"), CASES)
def test_statement_explains(rel: str, name: str, explain_conn: psycopg.Connection[Any]) -> None:
    params = params_for(rel, name)
    plan = explain_conn.execute(b"EXPLAIN " + STATEMENTS[rel][name].encode(), params).fetchall()
    assert plan, f"{rel}:{name}"


def test_every_sql_file_is_covered() -> None:
    # The blocks known today; a new file is found by the glob on its own.
    known = {
        "bench/cron_queries.sql",
        "cluster/alerts.sql",
        "cluster/queries.sql",
        "gateway/auth.sql",
        "gateway/queries.sql",
        "marketdata/queries.sql",
        "queue/queries.sql",
        "scheduler/queries.sql",
        "workflows/queries.sql",
    }
    assert known <= set(SQL_FILES), sorted(known - set(SQL_FILES))
    on_disk = {
        path.relative_to(PACKAGE_DIR).as_posix()
        for path in PACKAGE_DIR.glob("*/*.sql")
        if path.parent.name != "migrations"
    }
    assert on_disk <= set(SQL_FILES), sorted(on_disk - set(SQL_FILES))
    assert not any(rel.startswith(EXCLUDED) for rel in SQL_FILES)
    covered = {case.values[0] for case in CASES}
    assert covered == set(SQL_FILES), sorted(set(SQL_FILES) - covered)
    for rel in SQL_FILES:
        assert STATEMENTS[rel], f"{rel} has no named statement"


def test_overrides_name_real_files() -> None:
    # An override for a file that was renamed or removed would silently do nothing.
    assert set(OVERRIDES) <= set(SQL_FILES), sorted(set(OVERRIDES) - set(SQL_FILES))
