"""``tickbase bench gateway``, run as a user would, with small numbers."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from tests.e2e.conftest import bench_databases, run_cli, tickbase_env

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


ABUSE_KEYS = {
    "big_bodies",
    "big_body_mib",
    "big_body_status",
    "big_body_refuse_mean_s",
    "big_body_refuse_max_s",
    "rss_before_mib",
    "rss_growth_mib",
    "bodies_healthz_p99_ms",
    "keepalive_connections",
    "keepalive_held",
    "half_open_connections",
    "half_open_opened",
    "half_open_closed",
    "half_open_close_p50_s",
    "half_open_close_max_s",
    "header_timeout_s",
    "connections_healthz_p99_ms",
    "healthz_failures",
    "refuse_met",
    "rss_growth_met",
    "healthz_met",
    "half_open_met",
}


def test_bench_gateway_abuse_json(server_url: str) -> None:
    before = bench_databases(server_url, "gateway_abuse")
    env = tickbase_env(server_url)
    env["TICKBASE_HEADER_TIMEOUT"] = "1.5"  # the gateway the bench starts inherits it
    done = run_cli(
        *("bench", "gateway", "--abuse", "--bodies", "2", "--body-mib", "8"),
        *("--keepalive", "20", "--half-open", "40", "--json"),
        env=env,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1, done.stdout
    figures: dict[str, Any] = json.loads(lines[0])["tickbase"]
    assert set(figures) == ABUSE_KEYS
    assert all(math.isfinite(value) for value in figures.values())
    # The unauthenticated bodies were refused as unauthenticated, and every
    # half-open connection was closed by the gateway after its header timeout.
    assert figures["big_bodies"] == 2 and figures["big_body_mib"] == 8
    assert figures["big_body_status"] == 401
    assert figures["header_timeout_s"] == 1.5
    assert figures["half_open_opened"] == figures["half_open_closed"] == 40
    assert 1.0 <= figures["half_open_close_p50_s"] <= figures["half_open_close_max_s"]
    assert figures["keepalive_held"] == 20
    assert figures["healthz_failures"] == 0
    assert {figures[key] for key in ("refuse_met", "rss_growth_met", "half_open_met")} <= {0, 1}
    assert bench_databases(server_url, "gateway_abuse") == before


def test_bench_gateway_abuse_refuses_half_an_address() -> None:
    done = run_cli("bench", "gateway", "--abuse", "--url", "http://127.0.0.1:1")
    assert done.returncode != 0
    assert "--url and --pid go together" in done.stderr
    assert "Traceback" not in done.stderr
