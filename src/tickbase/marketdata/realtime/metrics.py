"""The real-time pipeline's figures for Prometheus and for the node heartbeat.

Both read :meth:`RealtimePipeline.figures() <tickbase.marketdata.realtime.pipeline.RealtimePipeline.figures>`
when asked (a scrape, a heartbeat), so the pulling loop, the shards and the
writer pay nothing per cycle for being observed: their counters exist anyway.

Prometheus (:class:`RealtimeCollector`), every name prefixed ``tickbase_realtime_``,
times in seconds as the cluster's own metrics:

=================================  =======  =========  ==========================================
name                               type     labels     what
=================================  =======  =========  ==========================================
pull_last_seconds                  gauge    shard      how long the shard's last pull took
pull_timeouts_total                counter  shard      pulls that missed their timeout
pull_errors_total                  counter  shard      pulls that failed
circuit_state                      gauge    shard      0 closed, 1 half-open, 2 open
shard_alive                        gauge    shard      1 while the shard's process runs
loop_seconds                       gauge    quantile   cycle duration, p50 and p99 (recent cycles)
loop_period_seconds                gauge               the loop's period
loop_overruns_total                counter             cycles longer than the period
loop_cycles_total                  counter             cycles run
writer_queue_depth                 gauge               bars waiting for the writer
writer_queue_capacity              gauge               the writer queue's bound
writer_dropped_total               counter             bars dropped on a full queue
writer_coalesced_total             counter             writes folded into one already queued
writer_failures_total              counter             flushes that failed (retried)
bars_written_total                 counter             final bars confirmed stored
trades_total                       counter             trades aggregated
late_trades_total                  counter             trades that amended an earlier bar
dropped_late_trades_total          counter             trades later than the lateness window
refused_trades_total               counter             trades refused as bad input
trade_to_bar_lag_seconds           gauge    quantile   trade → bar lag, p50 and p99 (live only)
=================================  =======  =========  ==========================================

The heartbeat (:class:`NodeReport`) gets a compact object under
``metrics.realtime``, what the alert rules ``realtime_circuit_open``,
``realtime_loop_slow`` and ``realtime_writer_drops`` read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["CIRCUIT_VALUES", "NodeReport", "RealtimeCollector", "exposition"]

CIRCUIT_VALUES = {"closed": 0, "half_open": 1, "open": 2}
"""``tickbase_realtime_circuit_state``'s value for each circuit state."""

Figures = dict[str, Any]
_PREFIX = "tickbase_realtime_"


class RealtimeCollector(Collector):
    """Prometheus collector of a pipeline's figures: ``source()`` at each scrape
    (``None``: no pipeline runs, nothing is collected).

    Example::

        registry = CollectorRegistry()
        registry.register(RealtimeCollector(pipeline.figures))
    """

    def __init__(self, source: Callable[[], Figures | None]) -> None:
        self.source = source

    def collect(self) -> Iterator[Any]:
        figures = self.source()
        if figures is None:
            return
        yield from _shard_metrics(figures["shards"])
        yield _quantiles(
            "loop_seconds", "Pulling loop cycle duration (recent cycles)", figures["loopMs"]
        )
        yield _gauge("loop_period_seconds", "Pulling loop period", figures["periodMs"] / 1000)
        yield _counter(
            "loop_overruns", "Pulling loop cycles longer than the period", figures["overruns"]
        )
        yield _counter("loop_cycles", "Pulling loop cycles run", figures["cycles"])
        writer = figures.get("writer")
        if writer is not None:
            yield _gauge("writer_queue_depth", "Bars waiting in the writer queue", writer["depth"])
            yield _gauge("writer_queue_capacity", "The writer queue's bound", writer["capacity"])
            yield _counter(
                "writer_dropped",
                "Bars dropped because the writer queue was full",
                writer["dropped"],
            )
            yield _counter(
                "writer_coalesced",
                "Bar writes folded into one already queued for the same key",
                writer["coalesced"],
            )
            yield _counter("writer_failures", "Writer flushes that failed", writer["failures"])
        yield _counter("bars_written", "Final bars confirmed stored", figures["barsStored"])
        yield _counter("trades", "Trades aggregated into bars", figures["trades"])
        yield _counter(
            "late_trades", "Trades within the lateness window that amended a bar", figures["late"]
        )
        yield _counter(
            "dropped_late_trades",
            "Trades later than the lateness window, dropped",
            figures["droppedLate"],
        )
        yield _counter(
            "refused_trades", "Trades refused as bad input or by shards", figures["refusedTrades"]
        )
        yield _quantiles(
            "trade_to_bar_lag_seconds",
            "Age of a symbol's newest trade when its bars reached the state (live sources)",
            figures.get("tradeToBarLagMs"),
        )


def exposition(figures: Figures | None) -> bytes:
    """``figures`` in Prometheus' text format (empty when ``None``)."""
    if figures is None:
        return b""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RealtimeCollector(lambda: figures))
    return generate_latest(registry)


class NodeReport:
    """The compact ``realtime`` object of the node heartbeat's metrics.

    Call it once per heartbeat: ``writer_drops_recent`` counts the bars dropped
    since the previous call (the heartbeat window), what ``realtime_writer_drops``
    fires on; it resolves at the first beat without new drops.

    Example::

        report = NodeReport(pipeline.figures)
        report()  # {'circuits_open': [], 'loop_p99_ms': 1.2, ...}
    """

    def __init__(self, source: Callable[[], Figures]) -> None:
        self.source = source
        self._dropped_before = 0

    def __call__(self) -> dict[str, Any]:
        figures = self.source()
        writer = figures.get("writer") or {}
        dropped = int(writer.get("dropped", 0))
        recent = max(0, dropped - self._dropped_before)
        self._dropped_before = dropped
        loop = figures.get("loopMs")
        lag = figures.get("tradeToBarLagMs")
        return {
            "circuits_open": [s["name"] for s in figures["shards"] if s["circuit"] == "open"],
            "shards": len(figures["shards"]),
            "loop_p99_ms": None if loop is None else round(loop["p99"], 3),
            "period_ms": figures["periodMs"],
            "overruns": figures["overruns"],
            "writer_depth": writer.get("depth"),
            "writer_capacity": writer.get("capacity"),
            "writer_dropped": dropped,
            "writer_drops_recent": recent,
            "lag_p99_ms": None if lag is None else round(lag["p99"], 3),
        }


def _shard_metrics(shards: list[dict[str, Any]]) -> Iterator[Any]:
    last = GaugeMetricFamily(
        _PREFIX + "pull_last_seconds", "How long the shard's last pull took", labels=["shard"]
    )
    timeouts = CounterMetricFamily(
        _PREFIX + "pull_timeouts", "Shard pulls that missed their timeout", labels=["shard"]
    )
    errors = CounterMetricFamily(
        _PREFIX + "pull_errors", "Shard pulls that failed", labels=["shard"]
    )
    circuit = GaugeMetricFamily(
        _PREFIX + "circuit_state",
        "The shard's circuit: 0 closed, 1 half-open, 2 open",
        labels=["shard"],
    )
    alive = GaugeMetricFamily(
        _PREFIX + "shard_alive", "1 while the shard's process runs", labels=["shard"]
    )
    for shard in shards:
        labels = [shard["name"]]
        last.add_metric(labels, shard["lastPullMs"] / 1000)
        timeouts.add_metric(labels, shard["timeouts"])
        errors.add_metric(labels, shard["errors"])
        circuit.add_metric(labels, CIRCUIT_VALUES.get(shard["circuit"], 2))
        alive.add_metric(labels, 1 if shard["alive"] else 0)
    yield from (last, timeouts, errors, circuit, alive)


def _gauge(name: str, help_text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(_PREFIX + name, help_text, value=float(value))


def _counter(name: str, help_text: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(_PREFIX + name, help_text, value=float(value))


def _quantiles(name: str, help_text: str, ms: dict[str, float] | None) -> GaugeMetricFamily:
    family = GaugeMetricFamily(_PREFIX + name, help_text, labels=["quantile"])
    if ms is not None:
        family.add_metric(["0.5"], ms["p50"] / 1000)
        family.add_metric(["0.99"], ms["p99"] / 1000)
    return family
