"""``tickbase bench cron``, run as a user would, with small numbers."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from tests.e2e.conftest import bench_databases, run_cli

pytestmark = pytest.mark.slow

SCHEDULES = 20
SECONDS = 3

KEYS = {
    "schedules",
    "seconds",
    "fires",
    "expected_fires",
    "missing_fires",
    "duplicate_fires",
    "lag_p50_ms",
    "lag_p99_ms",
    "lag_max_ms",
    "scheduler_cpu_percent",
    "cpu_ms_per_fire",
    "skipped_events",
    "missed_events",
}


def test_bench_cron_json(server_url: str) -> None:
    before = bench_databases(server_url, "cron")
    done = run_cli(
        "bench",
        "cron",
        "--schedules",
        str(SCHEDULES),
        "--seconds",
        str(SECONDS),
        "--json",
        database_url=server_url,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr

    lines = done.stdout.splitlines()
    assert len(lines) == 1, done.stdout  # one JSON line, nothing else on stdout
    figures: dict[str, Any] = json.loads(lines[0])["tickbase"]
    assert set(figures) == KEYS

    assert figures["schedules"] == SCHEDULES and figures["seconds"] == SECONDS
    assert figures["expected_fires"] == SCHEDULES * SECONDS
    # Exactly once: never doubled; and a lightly loaded scheduler misses nothing.
    assert figures["duplicate_fires"] == 0
    assert figures["missing_fires"] == 0
    assert figures["fires"] == figures["expected_fires"]
    assert figures["skipped_events"] == 0 and figures["missed_events"] == 0
    # Sanity, not speed: lags are ordered, non-negative and well inside the misfire grace.
    assert 0 <= figures["lag_p50_ms"] <= figures["lag_p99_ms"] <= figures["lag_max_ms"] < 60_000
    assert 0 <= figures["scheduler_cpu_percent"] <= 100 * 64
    assert figures["cpu_ms_per_fire"] >= 0
    assert all(math.isfinite(value) for value in figures.values())

    # The run's fresh database is gone.
    assert bench_databases(server_url, "cron") == before


def test_bench_cron_table(server_url: str) -> None:
    done = run_cli(
        "bench",
        "cron",
        "--schedules",
        "5",
        "--seconds",
        "1",
        database_url=server_url,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr
    assert "Cron benchmark" in done.stdout and "fire lag p99" in done.stdout
    assert "starting the scheduler" in done.stderr  # progress goes to stderr
