"""The real-time pipeline observed (issue 17): its Prometheus metrics on the gateway's
``/metrics``, its compact object in the node heartbeat, and the alert rules that read it
(``realtime_circuit_open``, ``realtime_loop_slow``, ``realtime_writer_drops``).

Real PostgreSQL, real shard processes, a real gateway on a socket and the real
heartbeat; a SIGSTOPped shard opens its circuit and the alert fires from what the
heartbeat wrote, and resolves once the shard answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

import tickbase
from tests.support.alerts import alert_rows, evaluate, events
from tests.support.gateway import running_gateway
from tests.support.waiting import wait_until
from tickbase.cluster.nodes import NodeHeartbeat, list_nodes
from tickbase.marketdata.realtime.metrics import NodeReport
from tickbase.marketdata.realtime.pipeline import RealtimePipeline
from tickbase.marketdata.realtime.replay_source import ReplaySource
from tickbase.marketdata.realtime.writer import kline_writer
from tickbase.marketdata.store import KlineStore

REALTIME_KINDS = {"realtime_circuit_open", "realtime_loop_slow", "realtime_writer_drops"}
BASE_MS = 1_699_999_980_000  # a minute boundary


def _stamp(ms: int) -> str:
    return (
        datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
    )


def tiny_trade_file(path: Path) -> Path:
    """Three minutes of trades of AAA and BBB, one late (amends its bar) and one beyond
    the 2 s lateness window (dropped late), in arrival order."""
    rows = []
    for n in range(90):
        t = BASE_MS + n * 2_000
        rows.append((t, 100.0 + n % 7, 1.0, "AAA"))
        rows.append((t + 500, 50.0 + n % 5, 2.0, "BBB"))
        if n == 40:
            rows.append((t - 1_000, 101.0, 1.0, "AAA"))  # 1 s late: amends
        if n == 60:
            rows.append((t - 30_000, 99.0, 1.0, "AAA"))  # 30 s late: dropped
    lines = ["time,price,qty,symbol", *(f"{_stamp(t)},{p!r},{q!r},{s}" for t, p, q, s in rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("tickbase_realtime_"):
                found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


@pytest.fixture
async def stored_pipeline(app: tickbase.App, tmp_path: Path) -> AsyncIterator[RealtimePipeline]:
    """A pipeline (2 shards) that has replayed the tiny file and stored every final bar."""
    pipeline = RealtimePipeline(
        ReplaySource(tiny_trade_file(tmp_path / "tiny.csv")),
        kline_writer(KlineStore(app.pool), "replay"),
        intervals=("1m",),
        workers=2,
        timeout=0.09,
    )
    await pipeline.start()
    try:
        await asyncio.wait_for(pipeline.wait_stored(), 60)
        yield pipeline
    finally:
        await pipeline.stop()


async def test_metrics_serve_the_pipelines_figures(
    app: tickbase.App, stored_pipeline: RealtimePipeline
) -> None:
    async with running_gateway(app, worker=False) as gw, gw.http(gw.viewer) as http:
        before = (await http.get("/metrics")).text
        assert "tickbase_tasks" in before and "tickbase_realtime_" not in before
        # Set after the gateway was built, as `tickbase up` does: found at the scrape.
        app.extensions["realtime"] = stored_pipeline
        try:
            text = (await http.get("/metrics")).text
        finally:
            del app.extensions["realtime"]
    figures = stored_pipeline.figures()
    got = samples(text)
    assert "tickbase_tasks" in text  # the cluster's figures are still there
    assert "# HELP tickbase_realtime_writer_dropped_total Bars dropped" in text
    assert "# TYPE tickbase_realtime_pull_timeouts_total counter" in text
    assert figures["trades"] == 181 and figures["late"] >= 1 and figures["droppedLate"] == 1
    assert figures["barsStored"] == 6  # 3 minutes × 2 symbols
    for name, value in {
        "trades_total": 181,  # accepted: the dropped one is not aggregated
        "late_trades_total": figures["late"],
        "dropped_late_trades_total": 1,
        "refused_trades_total": 0,
        "bars_written_total": 6,
        "writer_queue_capacity": figures["writer"]["capacity"],
        "writer_queue_depth": 0,
        "writer_dropped_total": 0,
        "writer_coalesced_total": figures["writer"]["coalesced"],
        "loop_period_seconds": 0.1,
    }.items():
        assert got[(f"tickbase_realtime_{name}", ())] == pytest.approx(value), name
    assert got[("tickbase_realtime_loop_overruns_total", ())] <= figures["overruns"]
    assert got[("tickbase_realtime_loop_cycles_total", ())] <= figures["cycles"]
    for shard in ("shard-0", "shard-1"):
        labels = (("shard", shard),)
        assert got[("tickbase_realtime_circuit_state", labels)] == 0  # closed
        assert got[("tickbase_realtime_shard_alive", labels)] == 1
        assert got[("tickbase_realtime_pull_timeouts_total", labels)] >= 0
        assert 0 < got[("tickbase_realtime_pull_last_seconds", labels)] < 1
    p50 = got[("tickbase_realtime_loop_seconds", (("quantile", "0.5"),))]
    p99 = got[("tickbase_realtime_loop_seconds", (("quantile", "0.99"),))]
    assert 0 < p50 <= p99 < 1
    # A replay is not live: no trade → bar lag, so the family has no sample.
    assert not any(name == "tickbase_realtime_trade_to_bar_lag_seconds" for name, _ in got)


@contextlib.asynccontextmanager
async def beat_with(app: tickbase.App, report: Any) -> AsyncIterator[NodeHeartbeat]:
    """The real heartbeat of node ``node-rt`` every 0.2 s, reporting ``realtime``."""
    assert app.url is not None
    beat = NodeHeartbeat(
        app.url, "node-rt", roles=["api"], interval=0.2, reports={"realtime": report}
    )
    await beat.start()
    try:
        yield beat
    finally:
        await beat.stop()


async def realtime_metrics(app: tickbase.App) -> dict[str, Any] | None:
    async with app.pool.connection() as conn:
        found = [n for n in await list_nodes(conn) if n["node_id"] == "node-rt"]
    return found[0]["metrics"].get("realtime") if found else None


async def test_heartbeat_metrics_fire_and_resolve_each_realtime_kind(
    app: tickbase.App, sql_conn: psycopg.Connection[Any]
) -> None:
    report: dict[str, Any] = {
        "circuits_open": [],
        "shards": 2,
        "loop_p99_ms": 2.0,
        "period_ms": 100.0,
        "overruns": 0,
        "writer_depth": 0,
        "writer_capacity": 10_000,
        "writer_dropped": 0,
        "writer_drops_recent": 0,
        "lag_p99_ms": None,
    }
    shown = dict(report)

    async def show(**changes: Any) -> None:
        shown.update(changes)

        async def written() -> bool:
            return await realtime_metrics(app) == shown

        await wait_until(written, timeout=5, message="a beat with the report")

    async with beat_with(app, lambda: dict(shown)):
        await show()
        assert await evaluate(app, kinds=REALTIME_KINDS) == []

        await show(
            circuits_open=["shard-1"], loop_p99_ms=150.0, writer_dropped=7, writer_drops_recent=7
        )
        changes = await evaluate(app, kinds=REALTIME_KINDS)
        # The loop rule waits 60 s (for_seconds): not yet.
        assert events(changes) == [
            ("fired", "realtime-circuit-open", "node-rt shard-1"),
            ("fired", "realtime-writer-drops", "node-rt"),
        ]
        circuit, drops = changes
        assert (
            circuit.message
            == "real-time shard shard-1 on node node-rt stopped answering: its circuit is open"
        )
        assert drops.value == 7 and "dropped 7 bars since the previous heartbeat" in drops.message
        # As if it had held that long (the node must stay alive: no `now` jump).
        sql_conn.execute(
            "UPDATE tickbase.alert_pending SET since = since - interval '61 seconds'"
            " WHERE rule = 'realtime-loop-slow'"
        )
        [slow] = await evaluate(app, kinds={"realtime_loop_slow"})
        assert (slow.event, slow.subject, slow.value) == ("fired", "node-rt", 150.0)
        assert "150.0 ms at p99 (threshold 100.0 ms)" in slow.message

        # A second open circuit is its own alert; the first does not fire again.
        await show(circuits_open=["shard-0", "shard-1"])
        assert events(await evaluate(app, kinds={"realtime_circuit_open"})) == [
            ("fired", "realtime-circuit-open", "node-rt shard-0")
        ]
        # Everything clears at the next beats: one resolution each.
        await show(circuits_open=[], loop_p99_ms=3.0, writer_drops_recent=0)
        assert sorted(events(await evaluate(app, kinds=REALTIME_KINDS))) == [
            ("resolved", "realtime-circuit-open", "node-rt shard-0"),
            ("resolved", "realtime-circuit-open", "node-rt shard-1"),
            ("resolved", "realtime-loop-slow", "node-rt"),
            ("resolved", "realtime-writer-drops", "node-rt"),
        ]
        assert await evaluate(app, kinds=REALTIME_KINDS) == []
        # A threshold set on the loop rule replaces the node's period.
        sql_conn.execute(
            "UPDATE tickbase.alert_rules SET threshold = 2, for_seconds = 0 WHERE name = 'realtime-loop-slow'"
        )
        assert events(await evaluate(app, kinds={"realtime_loop_slow"})) == [
            ("fired", "realtime-loop-slow", "node-rt")
        ]
    # A node that left: its alerts resolve.
    assert events(await evaluate(app, kinds=REALTIME_KINDS)) == [
        ("resolved", "realtime-loop-slow", "node-rt")
    ]
    assert {row[2] for row in alert_rows(sql_conn)} == {"resolved"}


async def test_a_stopped_shard_fires_realtime_circuit_open_through_the_heartbeat(
    app: tickbase.App, stored_pipeline: RealtimePipeline
) -> None:
    pipeline = stored_pipeline
    for stats in pipeline.loop.shard_stats.values():
        stats.breaker.cooldown = 0.5  # the default 5 s would only make the test slower
    [shard] = [s for s in pipeline.shards if s.name == "shard-1"]
    assert shard.pid is not None
    async with beat_with(app, NodeReport(pipeline.figures)):
        await wait_until(lambda: _has_report(app), timeout=5, message="a beat with realtime")
        assert await evaluate(app, kinds={"realtime_circuit_open"}) == []

        os.kill(shard.pid, signal.SIGSTOP)
        try:
            await wait_until(
                lambda: _open_circuits(app, ["shard-1"]), timeout=10, message="the circuit open"
            )
            [fired] = await evaluate(app, kinds={"realtime_circuit_open"})
            assert (fired.event, fired.subject) == ("fired", "node-rt shard-1")
        finally:
            os.kill(shard.pid, signal.SIGCONT)
        await wait_until(lambda: _open_circuits(app, []), timeout=15, message="the circuit closed")
        assert events(await evaluate(app, kinds={"realtime_circuit_open"})) == [
            ("resolved", "realtime-circuit-open", "node-rt shard-1")
        ]


async def _has_report(app: tickbase.App) -> bool:
    found = await realtime_metrics(app)
    return found is not None and found["shards"] == 2 and found["loop_p99_ms"] is not None


async def _open_circuits(app: tickbase.App, names: list[str]) -> bool:
    found = await realtime_metrics(app)
    return found is not None and found["circuits_open"] == names
