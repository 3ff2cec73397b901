"""``tickbase bench gateway``, run as a user would, with small numbers."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from tests.e2e.conftest import bench_databases, run_cli

pytestmark = pytest.mark.slow

CONNECTIONS = 30
REQUESTS = 50

KEYS = {
    "requests",
    "ack_p50_ms",
    "ack_p99_ms",
    "roundtrip_p50_ms",
    "roundtrip_p99_ms",
    "loaded_in_flight",
    "loaded_ack_p50_ms",
    "loaded_ack_p99_ms",
    "loaded_roundtrip_p50_ms",
    "loaded_roundtrip_p99_ms",
    "loaded_requests_per_s",
    "connections",
    "idle_connections",
    "idle_open_failures",
    "idle_open_seconds",
    "rss_before_idle_mib",
    "rss_mib",
    "rss_per_connection_kib",
    "gateway_idle_cpu_percent",
    "gateway_fd_limit",
    "idle_load_roundtrip_p50_ms",
    "idle_load_roundtrip_p99_ms",
    "target_ack_p99_ms",
    "target_roundtrip_p50_ms",
    "target_idle_connections",
    "target_rss_mib",
    "ack_p99_met",
    "roundtrip_p50_met",
    "idle_connections_met",
}


def test_bench_gateway_json(server_url: str) -> None:
    before = bench_databases(server_url, "gateway")
    done = run_cli(
        "bench",
        "gateway",
        "--connections",
        str(CONNECTIONS),
        "--requests",
        str(REQUESTS),
        "--json",
        database_url=server_url,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr

    lines = done.stdout.splitlines()
    assert len(lines) == 1, done.stdout  # one JSON line, nothing else on stdout
    figures: dict[str, Any] = json.loads(lines[0])["tickbase"]
    assert set(figures) == KEYS
    assert all(math.isfinite(value) for value in figures.values())

    assert figures["requests"] == REQUESTS and figures["connections"] == CONNECTIONS
    # Every idle connection opened, stayed open and answered its ping.
    assert figures["idle_connections"] == CONNECTIONS
    assert figures["idle_open_failures"] == 0
    # Sanity, not speed: latencies are positive, ordered, and an ack comes before its result.
    for prefix in ("", "loaded_"):
        ack_p50, ack_p99 = figures[f"{prefix}ack_p50_ms"], figures[f"{prefix}ack_p99_ms"]
        trip_p50, trip_p99 = (
            figures[f"{prefix}roundtrip_p50_ms"],
            figures[f"{prefix}roundtrip_p99_ms"],
        )
        assert 0 < ack_p50 <= ack_p99 < 30_000
        assert 0 < trip_p50 <= trip_p99 < 30_000
        assert ack_p50 <= trip_p50
    assert 0 < figures["idle_load_roundtrip_p50_ms"] <= figures["idle_load_roundtrip_p99_ms"]
    assert figures["loaded_requests_per_s"] > 0
    assert figures["rss_before_idle_mib"] > 0 and 0 < figures["rss_mib"] < 4096
    assert figures["gateway_fd_limit"] >= CONNECTIONS
    # 30 connections cannot meet the 5,000-connection target; the verdict must say so.
    assert figures["idle_connections_met"] == 0
    assert figures["target_idle_connections"] == 5000
    assert {figures["ack_p99_met"], figures["roundtrip_p50_met"]} <= {0, 1}

    # The run's fresh database is gone.
    assert bench_databases(server_url, "gateway") == before
