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
    "types": None,
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
    "concurrency_limit": None,
    "lock_key": 1,
    "dead_nodes": ["n"],
    "unless_leader": True,
    "concurrency": 2,
    "limits": "[]",
    "defined": ["t"],
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


MARKET_QUERIES = load_queries("tickbase.marketdata")
MARKET_PARAMS: dict[str, Any] = {
    "source": "replay",
    "symbol": "GOOG",
    "interval": "1d",
    "open_times": [datetime.now(UTC)],
    "opens": [1.0],
    "highs": [1.0],
    "lows": [1.0],
    "closes": [1.0],
    "volumes": [0.0],
    "anomalies": [False],
    "anomaly_move": 0.2,
    "durable": True,
    "new_state": "{}",
    "new_last": datetime.now(UTC),
    "state_from": datetime.now(UTC),
    "close_times": [None],
    "quote_volumes": [None],
    "trade_counts": [None],
    "taker_base": [None],
    "taker_quote": [None],
    "filled": [False],
    "series": "fear_greed",
    "kind": "sentiment",
    "times": [datetime.now(UTC)],
    "values": [50.0],
    "labels": ["Neutral"],
    "step": 3600,
    "limit": 10,
    "before": datetime.now(UTC),
    "after": None,
    "start": datetime.now(UTC),
    "end": datetime.now(UTC),
    "key": "k",
    "value": "1",
    "ttl": 10.0,
    "last_open_time": datetime.now(UTC),
    "state": "{}",
    "months": False,
    "origin": datetime(1970, 1, 1, tzinfo=UTC),
    "scan_start": datetime.now(UTC),
    "scan_end": datetime.now(UTC),
    "sample": 500,
}


@pytest.mark.parametrize("name", sorted(MARKET_QUERIES))
def test_every_market_query_explains(name: str, sql_conn: psycopg.Connection[Any]) -> None:
    plan = sql_conn.execute(b"EXPLAIN " + MARKET_QUERIES[name].encode(), MARKET_PARAMS).fetchall()
    assert plan, name
