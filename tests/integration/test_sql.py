"""Every named statement is valid SQL for the schema; the dequeue uses its index."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from tickbase.db.sqlfile import load_queries

QUERIES = load_queries("tickbase.queue")

# Representative parameters for every statement; EXPLAIN plans without running.
PARAMS: dict[str, Any] = {
    "batch": '[{"task_type": "t", "payload": {}}]',
    "task_type": "t",
    "queue": "default",
    "queues": ["default"],
    "priority": 0,
    "payload": "{}",
    "max_attempts": 1,
    "retry_delay": 1.0,
    "timeout": None,
    "run_at": None,
    "delay": None,
    "dedupe_key": None,
    "dedupe_keys": ["k"],
    "request_id": None,
    "concurrency_key": None,
    "notify_finish": False,
    "node_id": "n",
    "limit": 10,
    "lease_seconds": 30.0,
    "ids": [1],
    "attempts": [1],
    "outcomes": ["succeeded"],
    "results": ["null"],
    "errors": [None],
    "now": datetime.now(UTC),
    "id": 1,
    "detail": None,
    "status": None,
    "before_id": None,
    "older_than_seconds": 60.0,
}


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_every_named_query_explains(name: str, sql_conn: psycopg.Connection[Any]) -> None:
    plan = sql_conn.execute(b"EXPLAIN " + QUERIES[name].encode(), PARAMS).fetchall()
    assert plan, name


@pytest.mark.parametrize("queues", [None, ["q1"], ["q1", "q3"]])
def test_dequeue_reads_its_partial_index(
    queues: list[str] | None, sql_conn: psycopg.Connection[Any]
) -> None:
    # A realistic table: many finished tasks, a backlog in several queues.
    sql_conn.execute(
        "INSERT INTO tickbase.tasks (task_type, queue, status, finished_at)"
        " SELECT 't', 'q' || (i % 5), 'succeeded', now() FROM generate_series(1, 20000) i"
    )
    sql_conn.execute(
        "INSERT INTO tickbase.tasks (task_type, queue) SELECT 't', 'q' || (i % 5) FROM generate_series(1, 5000) i"
    )
    sql_conn.execute("ANALYZE tickbase.tasks")
    params = {**PARAMS, "queues": queues, "limit": 100}
    plan = "\n".join(
        row[0] for row in sql_conn.execute(b"EXPLAIN " + QUERIES["task_claim"].encode(), params)
    )
    # each served queue is one range of the dequeue index, never a filter over all queues
    assert "Index Scan using tasks_dequeue_idx" in plan, plan
    assert "Index Cond: ((queue = " in plan, plan
    assert "Seq Scan on tasks" not in plan, plan
