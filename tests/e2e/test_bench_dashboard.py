"""``tickbase bench dashboard``, run as a user would, with small numbers."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from tests.e2e.conftest import bench_databases, run_cli
from tickbase.bench.dashboard import PAGES

pytestmark = pytest.mark.slow


def test_bench_dashboard_json(server_url: str) -> None:
    before = bench_databases(server_url, "dashboard")
    done = run_cli(
        "bench",
        "dashboard",
        "--rows",
        "3000",
        "--schedules",
        "20",
        "--samples",
        "3",
        "--json",
        database_url=server_url,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1, done.stdout  # one JSON line, nothing else on stdout
    figures: dict[str, Any] = json.loads(lines[0])["tickbase"]
    pages = {f"{page}_{cut}_ms" for page in PAGES for cut in ("p50", "p95")}
    assert set(figures) == pages | {
        "rows",
        "schedules",
        "load_seconds",
        "db_tx_per_s_1",
        "db_tx_per_s_20",
    }
    assert figures["rows"] == 3000 and figures["schedules"] == 20
    for key in pages:
        assert math.isfinite(figures[key]) and figures[key] > 0, key
        if key.endswith("_p50_ms"):
            assert figures[key] <= figures[key.replace("p50", "p95")], key
    # The producer's 20 tasks a second at least; the figure is a rate, not a count.
    assert figures["db_tx_per_s_1"] >= 10 and figures["db_tx_per_s_20"] >= 10
    assert bench_databases(server_url, "dashboard") == before  # its database is dropped


def test_bench_dashboard_refuses_bad_numbers(server_url: str) -> None:
    done = run_cli("bench", "dashboard", "--rows", "10", database_url=server_url)
    assert done.returncode != 0
    assert "--rows" in done.stderr
