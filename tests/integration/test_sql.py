"""The claim statements read their indexes, never a scan of the tasks table."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from tickbase.db.sqlfile import load_queries

QUERIES = load_queries("tickbase.queue")

# Parameters of the claim statements planned below (test_sql_explain.py plans
# every statement of every block).
PARAMS: dict[str, Any] = {
    "queues": ["default"],
    "types": None,
    "node_id": "n",
    "limit": 10,
    "lease_seconds": 30.0,
    "lock_key": 1,
}


@pytest.mark.parametrize("types", [None, ["t"]])
@pytest.mark.parametrize("queues", [None, ["q1"], ["q1", "q3"]])
def test_dequeue_reads_its_partial_index(
    queues: list[str] | None, types: list[str] | None, sql_conn: psycopg.Connection[Any]
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
    params = {**PARAMS, "queues": queues, "types": types, "limit": 100}
    plan = "\n".join(
        row[0] for row in sql_conn.execute(b"EXPLAIN " + QUERIES["task_claim"].encode(), params)
    )
    # each served queue is one range of the dequeue index, never a filter over all queues
    assert "Index Scan using tasks_dequeue_idx" in plan, plan
    assert "Index Cond: ((queue = " in plan, plan
    assert "Seq Scan on tasks" not in plan, plan


def test_limited_claim_reads_indexes(sql_conn: psycopg.Connection[Any]) -> None:
    # Many finished tasks, a plain backlog, and limited tasks: keyed, rate-limited
    # and in a limited queue. The limited claim must not scan the table.
    sql_conn.execute(
        "INSERT INTO tickbase.task_limits (task_type, rate_max, rate_window_seconds)"
        " VALUES ('rated', 10, 60)"
    )
    sql_conn.execute("INSERT INTO tickbase.queue_limits (queue, concurrency) VALUES ('q1', 2)")
    sql_conn.execute(
        "INSERT INTO tickbase.tasks (task_type, queue, status, finished_at)"
        " SELECT 't', 'q' || (i % 5), 'succeeded', now() FROM generate_series(1, 20000) i"
    )
    sql_conn.execute(
        "INSERT INTO tickbase.tasks (task_type, queue, concurrency_key)"
        " SELECT CASE WHEN i % 3 = 0 THEN 'rated' ELSE 't' END, 'q' || (i % 5),"
        "        CASE WHEN i % 7 = 0 THEN 'k' || (i % 50) END"
        " FROM generate_series(1, 5000) i"
    )
    sql_conn.execute("ANALYZE tickbase.tasks")
    for types in (None, ["t", "rated"]):
        for name in ("task_claim_limited_gate", "task_claim_limited"):
            params = {**PARAMS, "types": types}
            plan = "\n".join(
                row[0] for row in sql_conn.execute(b"EXPLAIN " + QUERIES[name].encode(), params)
            )
            assert "Seq Scan on tasks" not in plan, (name, types, plan)
