"""``tickbase bench indicators``, run as a user would, with small numbers."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from tests.e2e.conftest import bench_databases, run_cli
from tickbase.bench.indicators import build_bars
from tickbase.marketdata.bars import load_bars, sample_names

pytestmark = pytest.mark.slow

BARS = 30_000  # more than one copy of the sample series: the repeat is exercised
CLOSED_BARS = 20

KEYS = {
    "bars",
    "incremental_bars_per_s",
    "incremental_us_per_bar",
    "talib_batch_bars_per_s",
    "talib_batch_us_per_bar",
    "closed_bars",
    "closed_bar_to_stored_p50_ms",
    "closed_bar_to_stored_p99_ms",
}


def test_bench_indicators_json(server_url: str) -> None:
    before = bench_databases(server_url, "indicators")
    done = run_cli(
        "bench",
        "indicators",
        "--bars",
        str(BARS),
        "--closed-bars",
        str(CLOSED_BARS),
        "--json",
        database_url=server_url,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr

    lines = done.stdout.splitlines()
    assert len(lines) == 1, done.stdout  # one JSON line, nothing else on stdout
    figures: dict[str, Any] = json.loads(lines[0])["indicators"]
    assert set(figures) == KEYS
    assert all(math.isfinite(value) and value > 0 for value in figures.values())

    # Sanity, not speed: the figures describe the run asked for and agree with each other.
    assert figures["bars"] == BARS and figures["closed_bars"] == CLOSED_BARS
    for kind in ("incremental", "talib_batch"):
        per_s, us = figures[f"{kind}_bars_per_s"], figures[f"{kind}_us_per_bar"]
        assert math.isclose(per_s * us, 1e6, rel_tol=1e-9)
    p50, p99 = figures["closed_bar_to_stored_p50_ms"], figures["closed_bar_to_stored_p99_ms"]
    assert p50 <= p99 < 30_000

    # The run's fresh database is gone.
    assert bench_databases(server_url, "indicators") == before


def test_bench_bars_are_the_samples_repeated_in_time_order() -> None:
    samples = [bar for name in sample_names() for bar in load_bars(name)]
    count = len(samples) + 100
    columns = build_bars(count)
    assert len(columns.open_time) == len(columns.close) == len(columns.volume) == count
    assert all(a < b for a, b in zip(columns.open_time, columns.open_time[1:], strict=False))
    assert all(t.tzinfo is not None for t in columns.open_time[:10])
    repeated = samples + samples[:100]
    assert columns.close == [bar.close for bar in repeated]
    assert columns.high == [bar.high for bar in repeated]
    assert columns.low == [bar.low for bar in repeated]
