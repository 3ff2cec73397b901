"""Tasks by status at scale: exact while small, finished ones sampled when large (issue 16).

No count over the whole table on a dashboard's or a scrape's path: above
``STATS_EXACT_ROWS`` (the planner's row estimate) waiting and running tasks
are still counted exactly, through the partial indexes that hold only them,
and finished ones come from a page sample. Here the threshold is lowered so
a small table takes the large path; with the sample covering every page the
estimate must equal the exact count.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from tickbase.cluster import metrics


def load(sql_conn: psycopg.Connection[Any]) -> None:
    sql_conn.execute(
        "INSERT INTO tickbase.tasks (task_type, queue, status, attempts, started_at,"
        " finished_at, lease_expires_at)"
        " SELECT 't', 'q' || (n % 2),"
        "  CASE WHEN n % 10 = 0 THEN 'pending' WHEN n % 10 = 1 THEN 'running'"
        "       WHEN n % 10 = 2 THEN 'failed' ELSE 'succeeded' END,"
        "  1, now(), CASE WHEN n % 10 >= 2 THEN now() END,"
        "  CASE WHEN n % 10 = 1 THEN now() + interval '1 minute' END"
        " FROM generate_series(1, 2000) AS n"
    )
    sql_conn.execute("ANALYZE tickbase.tasks")


def counts(stats: dict[str, Any]) -> dict[tuple[str, str], int]:
    return {(t["queue"], t["status"]): t["count"] for t in stats["tasks"]}


def test_a_small_table_is_counted_exactly(
    sql_conn: psycopg.Connection[Any], database_url: str
) -> None:
    load(sql_conn)
    with psycopg.connect(database_url) as conn:
        stats = metrics.read_stats(conn)
    assert stats["tasks_estimated"] is False
    assert counts(stats)[("q0", "pending")] == 200 and counts(stats)[("q1", "running")] == 200


def test_a_large_table_counts_active_tasks_exactly_and_samples_the_rest(
    sql_conn: psycopg.Connection[Any], database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    load(sql_conn)
    with psycopg.connect(database_url) as conn:
        exact = counts(metrics.read_stats(conn))
        monkeypatch.setattr(metrics, "STATS_EXACT_ROWS", 100)
        sampled = metrics.read_stats(conn)
        monkeypatch.setattr(metrics, "STATS_SAMPLE_ROWS", 100)  # 5 % of the pages
        partial = metrics.read_stats(conn)
    assert sampled["tasks_estimated"] is True
    assert counts(sampled) == exact  # every page sampled: the estimate is the count
    active = {k: v for k, v in counts(partial).items() if k[1] in ("pending", "running")}
    assert active == {k: v for k, v in exact.items() if k[1] in ("pending", "running")}
    # A 5 % sample scales its counts by 20: each estimate is a multiple of it.
    assert all(v % 20 == 0 for k, v in counts(partial).items() if k[1] in ("failed", "succeeded"))
