"""``tickbase bench realtime``, run as a user would, with small numbers."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from tests.e2e.conftest import bench_databases, run_cli

pytestmark = pytest.mark.slow

KEYS = {
    "aggregation": {"trades", "vectorisedTradesPerS", "perTradeTradesPerS", "plainLoopTradesPerS"},
    "endToEnd": {"trades", "bars", "seconds", "tradesPerS", "plainLoopTradesPerS"},
    "loop": {
        "symbols",
        "tradesPerS",
        "cycles",
        "p50Ms",
        "p99Ms",
        "maxMs",
        "overruns",
        "pullTimeouts",
        "skippedPulls",
        "refusedTrades",
        "snapshotEntries",
    },
    "memory": {
        "symbols",
        "shardRssMiB",
        "baselineRssMiB",
        "rssPerSymbolKiB",
        "parentStateEntries",
        "parentStateKiB",
        "parentStatePerSymbolKiB",
    },
    "ingest": {"frames", "tradesPerS", "parsePerS", "orjsonPerS"},
    "push": {"pushes", "tradePushP99Ms", "tradePushP50Ms", "pushP99Ms", "periodMs"},
}


def test_bench_realtime_json(server_url: str) -> None:
    before = bench_databases(server_url, "realtime")
    done = run_cli(
        "bench",
        "realtime",
        *("--trades", "5000", "--symbols", "20", "--rate", "2000"),
        *("--seconds", "1", "--warmup", "0.5", "--json"),
        database_url=server_url,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1, done.stdout  # one JSON line, nothing else on stdout
    sections: dict[str, dict[str, Any]] = json.loads(lines[0])["realtime"]
    assert {key: set(figures) for key, figures in sections.items()} == KEYS
    assert all(math.isfinite(v) for figures in sections.values() for v in figures.values())

    # Sanity, not speed: the figures describe the run asked for.
    assert sections["aggregation"]["trades"] == 5000
    assert sections["endToEnd"]["trades"] == 2 * 5000 and sections["endToEnd"]["bars"] > 0
    assert sections["loop"]["symbols"] == 20 and sections["loop"]["cycles"] > 0
    assert sections["loop"]["p50Ms"] <= sections["loop"]["p99Ms"] <= sections["loop"]["maxMs"]
    assert sections["loop"]["snapshotEntries"] == 20 * 3
    assert sections["memory"]["parentStateEntries"] == 20 * 3
    assert sections["ingest"]["frames"] == 5000 and sections["ingest"]["tradesPerS"] > 0
    assert sections["push"]["pushes"] > 0 and sections["push"]["tradePushP99Ms"] > 0
    assert bench_databases(server_url, "realtime") == before
