"""Cluster figures from the database: ``tickbase stats`` and Prometheus collectors.

Everything is read from the tables at the moment of asking (a scrape or a
command), so every node reports the same cluster-wide truth and no process
keeps counters that a restart would lose.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from tickbase.db.pool import configure_connection, session_options
from tickbase.db.sqlfile import load_queries

STATS_EXACT_ROWS = 200_000
"""Up to this many task rows (the planner's estimate), tasks by status are counted exactly."""
STATS_SAMPLE_ROWS = 50_000
"""Above it, finished tasks are estimated from a sample of about this many rows."""

Q = load_queries("tickbase.cluster")

LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
DURATION_BUCKETS = (0.001, 0.01, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)
# Figures served to scrapes are at most this old: a flood of scrapes costs one
# read per second, not one each.
MAX_AGE_SECONDS = 1.0
CONNECT_TIMEOUT_SECONDS = 5


def read_stats_at(url: str) -> dict[str, Any]:
    """:func:`read_stats` over a connection of its own (sync: call it in a thread
    from async code)."""
    with psycopg.connect(url, autocommit=True, options=session_options()) as conn:
        configure_connection(conn)
        return read_stats(conn)


def public_stats(figures: dict[str, Any]) -> dict[str, Any]:
    """The figures without the raw samples (``_latencies``, ``_durations``)."""
    return {k: v for k, v in figures.items() if not k.startswith("_")}


def read_stats(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    """Tasks by queue and status, activity, and recent timings (sync connection)."""
    by_status, estimated = _tasks_by_status(conn)
    cursor = conn.execute(Q["stats_activity"])
    row = cursor.fetchone()
    assert row is not None and cursor.description is not None
    activity = dict(zip([c.name for c in cursor.description], row, strict=True))
    unserved = [
        {"task_type": task_type, "queue": queue, "count": int(n)}
        for task_type, queue, n in conn.execute(Q["tasks_unserved"]).fetchall()
    ]
    timings = conn.execute(Q["stats_timings"]).fetchall()
    latencies = sorted(t[0] for t in timings if t[0] is not None)
    durations = sorted(t[1] for t in timings if t[1] is not None)
    return {
        "tasks": by_status,
        "tasks_estimated": estimated,
        **activity,
        # Due tasks no live worker can claim (type not handled, or queue not served).
        "no_worker": sum(u["count"] for u in unserved),
        "no_worker_by_type": unserved,
        "throughput_per_s": activity["finished_last_minute"] / 60.0,
        "latency_seconds": _summary(latencies),
        "duration_seconds": _summary(durations),
        "_latencies": latencies,
        "_durations": durations,
    }


def _tasks_by_status(conn: psycopg.Connection[Any]) -> tuple[list[dict[str, Any]], bool]:
    """Tasks by queue and status, and whether the finished ones are estimated.

    Up to :data:`STATS_EXACT_ROWS` rows every count is exact; above, waiting
    and running tasks still are (their partial indexes hold only them) and
    finished ones come from a sample of about :data:`STATS_SAMPLE_ROWS` rows,
    so a scrape never counts millions of rows."""
    row = conn.execute(Q["stats_tasks_rows"]).fetchone()
    rows = int(row[0]) if row else 0
    if rows <= STATS_EXACT_ROWS:
        found = conn.execute(Q["stats_tasks"]).fetchall()
        estimated = False
    else:
        percent = max(0.01, min(100.0, 100.0 * STATS_SAMPLE_ROWS / rows))
        found = [
            *conn.execute(Q["stats_tasks_active"]).fetchall(),
            *conn.execute(Q["stats_tasks_final_sampled"], {"percent": percent}).fetchall(),
        ]
        estimated = True
    by_status = [
        {"queue": queue, "status": status, "count": int(n)}
        for queue, status, n in sorted(found, key=lambda r: (r[0], r[1]))
    ]
    return by_status, estimated


def _summary(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"count": 0, "p50": None, "p95": None, "max": None}
    cuts = (
        statistics.quantiles(values, n=20, method="inclusive") if len(values) > 1 else values * 19
    )
    return {
        "count": len(values),
        "p50": statistics.median(values),
        "p95": cuts[18],
        "max": values[-1],
    }


class CachedStats:
    """:func:`read_stats` over ONE connection of its own, at most once per ``max_age``.

    Thread-safe (Prometheus' HTTP server scrapes from a thread per request):
    callers arriving while a read is under way wait for it and share it. A lost
    connection is reconnected at the next read.

    Example::

        stats = CachedStats(url, label="tickbase-metrics")
        figures = stats.read()
        stats.close()
    """

    def __init__(self, url: str, *, label: str, max_age: float = MAX_AGE_SECONDS) -> None:
        self.url = url
        self.max_age = max_age
        self._application_name = f"{label}:{os.getpid()}"
        self._conn: psycopg.Connection[Any] | None = None
        self._lock = threading.Lock()
        self._stats: dict[str, Any] | None = None
        self._read_at = -float("inf")

    def read(self) -> dict[str, Any]:
        """The figures, at most ``max_age`` seconds old."""
        with self._lock:
            if self._stats is None or time.monotonic() - self._read_at > self.max_age:
                self._stats = self._read()
                self._read_at = time.monotonic()
            return self._stats

    def close(self) -> None:
        """Close the connection (a later :meth:`read` opens a new one)."""
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = None

    def _read(self) -> dict[str, Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self.close()
            self._conn = psycopg.connect(
                self.url,
                autocommit=True,
                connect_timeout=CONNECT_TIMEOUT_SECONDS,
                application_name=self._application_name,
                options=session_options(),
            )
            configure_connection(self._conn)
        try:
            return read_stats(self._conn)
        except psycopg.OperationalError:
            self.close()
            raise


class ClusterCollector(Collector):
    """Prometheus collector of the cluster's figures: ``source()`` at each scrape.

    Example::

        registry = CollectorRegistry()
        registry.register(ClusterCollector(CachedStats(url, label="tickbase-metrics").read))
        start_http_server(9108, registry=registry)
    """

    def __init__(self, source: Callable[[], dict[str, Any]]) -> None:
        self.source = source

    def collect(self) -> Iterator[Any]:
        stats = self.source()
        tasks = GaugeMetricFamily(
            "tickbase_tasks", "Tasks by queue and status", labels=["queue", "status"]
        )
        for row in stats["tasks"]:
            tasks.add_metric([row["queue"], row["status"]], row["count"])
        yield tasks
        gauges = {
            "tickbase_throughput_per_second": (
                "Tasks finished per second, over the last minute",
                stats["throughput_per_s"],
            ),
            "tickbase_failures_last_hour": (
                "Tasks failed for good in the last hour",
                stats["failed_last_hour"],
            ),
            "tickbase_backlog": ("Tasks due and waiting for a worker", stats["backlog"]),
            "tickbase_no_worker": (
                "Due tasks that no live worker handles (their type or queue)",
                stats["no_worker"],
            ),
            "tickbase_oldest_due_seconds": (
                "Age of the oldest due task",
                stats["oldest_due_seconds"] or 0,
            ),
            "tickbase_schedule_lag_seconds": (
                "How late the most overdue schedule is",
                stats["schedule_lag_seconds"] or 0,
            ),
            "tickbase_nodes_alive": ("Nodes with a recent heartbeat", stats["nodes_alive"]),
            "tickbase_leader_present": (
                "1 when a node holds the leader lease",
                1 if stats["leader"] else 0,
            ),
        }
        for name, (help_text, value) in gauges.items():
            yield GaugeMetricFamily(name, help_text, value=float(value))
        yield _histogram(
            "tickbase_enqueue_to_start_seconds",
            "From due to started, tasks started in the last 5 minutes",
            stats["_latencies"],
            LATENCY_BUCKETS,
        )
        yield _histogram(
            "tickbase_run_duration_seconds",
            "Run time of tasks started in the last 5 minutes",
            stats["_durations"],
            DURATION_BUCKETS,
        )


def _histogram(
    name: str, help_text: str, values: list[float], bounds: tuple[float, ...]
) -> HistogramMetricFamily:
    buckets = [(str(bound), sum(1 for v in values if v <= bound)) for bound in bounds]
    buckets.append(("+Inf", len(values)))
    return HistogramMetricFamily(name, help_text, buckets=buckets, sum_value=float(sum(values)))
