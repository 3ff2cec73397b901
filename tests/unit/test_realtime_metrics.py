"""The real-time collector and heartbeat report over given figures (no pipeline, no DB)."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tickbase.marketdata.realtime.metrics import NodeReport, exposition


def figures(**changes: Any) -> dict[str, Any]:
    shard = {
        "name": "shard-0",
        "pid": 1,
        "alive": True,
        "symbols": 1,
        "circuit": "closed",
        "pulls": 10,
        "timeouts": 0,
        "errors": 0,
        "skipped": 0,
        "lastPullMs": 2.0,
        "refused": 0,
    }
    base = {
        "periodMs": 100.0,
        "cycles": 10,
        "overruns": 1,
        "loopMs": {"p50": 1.0, "p99": 4.0, "max": 9.0},
        "tradeToBarLagMs": {"p50": 20.0, "p99": 80.0, "max": 90.0},
        "trades": 5,
        "late": 1,
        "droppedLate": 0,
        "refusedTrades": 0,
        "barsStored": 2,
        "shards": [
            shard,
            {**shard, "name": "shard-1", "circuit": "half_open"},
            {**shard, "name": "shard-2", "circuit": "open", "alive": False},
        ],
        "writer": {
            "depth": 3,
            "capacity": 10,
            "offered": 9,
            "coalesced": 4,
            "dropped": 0,
            "written": 5,
            "flushes": 2,
            "failures": 0,
            "lastFlushMs": 1.0,
        },
    }
    base.update(changes)
    return base


def values(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
    }


def test_circuit_states_quantiles_and_lag() -> None:
    got = values(exposition(figures()))
    assert [
        got[("tickbase_realtime_circuit_state", (("shard", f"shard-{n}"),))] for n in range(3)
    ] == [0, 1, 2]
    assert got[("tickbase_realtime_shard_alive", (("shard", "shard-2"),))] == 0
    assert got[("tickbase_realtime_trade_to_bar_lag_seconds", (("quantile", "0.99"),))] == 0.08
    assert got[("tickbase_realtime_loop_seconds", (("quantile", "0.5"),))] == 0.001
    assert got[("tickbase_realtime_pull_last_seconds", (("shard", "shard-0"),))] == 0.002
    assert got[("tickbase_realtime_writer_coalesced_total", ())] == 4


def test_no_pipeline_no_writer() -> None:
    assert exposition(None) == b""
    got = values(exposition(figures(writer=None, loopMs=None)))
    assert not any(name.startswith("tickbase_realtime_writer") for name, _ in got)
    assert not any(name == "tickbase_realtime_loop_seconds" for name, _ in got)


def test_node_report_counts_drops_since_the_previous_report() -> None:
    shown = figures()
    report = NodeReport(lambda: shown)
    first = report()
    assert first["circuits_open"] == ["shard-2"] and first["loop_p99_ms"] == 4.0
    assert (first["writer_depth"], first["writer_capacity"], first["lag_p99_ms"]) == (3, 10, 80.0)
    assert first["writer_drops_recent"] == 0
    shown["writer"] = {**shown["writer"], "dropped": 7}
    assert report()["writer_drops_recent"] == 7
    assert report()["writer_drops_recent"] == 0  # none new since
    shown["writer"] = None
    assert report()["writer_depth"] is None
